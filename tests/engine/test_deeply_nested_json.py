"""JSON nested deeper than Python can recurse is malformed input, not a crash (engine._json).

``json.loads`` raises ``RecursionError`` near a thousand levels; ``[[[…]]]`` that deep is 2 KB, so
a provider's stream — or a model writing a tool call's arguments — can produce it. Through real
HTTP on loopback: the tool call gets an error result and the turn goes on, a worker whose history
holds such a call still renders it on its next request (Anthropic parses the arguments back into
``input``), and a stream chunk nested that deep is a protocol error like any malformed chunk.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from provider_bodies import anthropic_text, delta, sse

from engine import (
    AnthropicProvider,
    Message,
    OpenAIChatProvider,
    ProviderProtocolError,
    RetryPolicy,
    Role,
    StopReason,
    Tool,
    ToolCall,
    ToolRegistry,
    TurnConfig,
    run_turn,
)
from engine.testing import EventRecorder, LoopbackServer, Reply

BOUND = 20  # seconds: a safety net only, never a speed assertion
FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01, max_stream_restarts=1)
DEEP = "[" * 5000 + "]" * 5000  # 10 KB; json.loads alone raises RecursionError on it


USAGE = {"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}}
TEXT_ANSWER = sse(delta(content="Done."), delta("stop"), USAGE, "[DONE]")


def registry(calls: list[Any]) -> ToolRegistry:
    async def lookup(args: Mapping[str, Any]) -> str:
        calls.append(args)
        return "found"

    tools = ToolRegistry()
    tools.add(Tool("lookup", "look something up", lookup))
    return tools


def test_the_plain_parser_really_fails_on_this_input() -> None:
    # What the engine guards against: without engine._json this escapes every `except ValueError`.
    with pytest.raises(RecursionError):
        json.loads(DEEP)


async def test_a_tool_call_nested_too_deeply_gets_an_error_result(
    client: httpx.AsyncClient,
) -> None:
    call = {"index": 0, "id": "call_deep", "type": "function",
            "function": {"name": "lookup", "arguments": DEEP}}  # fmt: skip
    first = sse(delta(role="assistant", tool_calls=[call]), delta("tool_calls"), USAGE, "[DONE]")
    ran: list[Any] = []
    rec = EventRecorder()
    async with LoopbackServer([Reply(body=first), Reply(body=TEXT_ANSWER)]) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1")
        result = await asyncio.wait_for(
            run_turn(
                provider,
                TurnConfig(model="m", retry=FAST),
                (Message(Role.USER, "look it up"),),
                emit=rec,
                tools=registry(ran),
            ),
            BOUND,
        )
    assert result.stop_reason is StopReason.END_TURN
    [tool_result] = [m for m in result.messages if m.role is Role.TOOL]
    assert tool_result.is_error
    assert "nested too deeply" in tool_result.text
    assert ran == []  # the tool never saw the arguments
    [notice] = rec.notices("invalid_tool_arguments")
    assert "call_deep" in notice.message
    # the model was told, in the turn's second request
    assert len(server.requests) == 2
    sent = server.requests[1].json()["messages"]
    assert sent[-1]["role"] == "tool"
    assert "nested too deeply" in sent[-1]["content"]


async def test_a_history_holding_such_a_call_still_renders_for_anthropic(
    client: httpx.AsyncClient,
) -> None:
    # The worker's next turn: Anthropic wants each tool_use's input as an object, parsed back
    # from the stored arguments. Before, the RecursionError failed every later turn of the worker.
    history = (
        Message(Role.USER, "look it up"),
        Message(Role.ASSISTANT, "", tool_calls=(ToolCall("toolu_1", "lookup", DEEP),)),
        Message(
            Role.TOOL, "error: nested too deeply", tool_call_id="toolu_1", tool_name="lookup",
            is_error=True,
        ),
        Message(Role.USER, "try again"),
    )  # fmt: skip
    async with LoopbackServer([Reply(body=anthropic_text("ok"))]) as server:
        result = await asyncio.wait_for(
            run_turn(
                AnthropicProvider(client, server.url),
                TurnConfig(model="m", retry=FAST),
                history,
                emit=EventRecorder(),
                tools=registry([]),
            ),
            BOUND,
        )
    assert result.messages[-1].text == "ok"
    [tool_use] = [
        block
        for m in server.requests[0].json()["messages"]
        if m["role"] == "assistant"
        for block in m["content"]
        if block["type"] == "tool_use"
    ]
    assert tool_use["id"] == "toolu_1"
    assert tool_use["input"] == {}


async def test_a_stream_chunk_nested_too_deeply_is_a_protocol_error(
    client: httpx.AsyncClient,
) -> None:
    body = sse(delta(role="assistant", content="Hel")) + f"data: {DEEP}\n\n".encode()
    async with LoopbackServer([Reply(body=body)], default=Reply(body=TEXT_ANSWER)) as server:
        with pytest.raises(ProviderProtocolError, match="malformed JSON"):
            await asyncio.wait_for(
                run_turn(
                    OpenAIChatProvider(client, server.url + "/v1"),
                    TurnConfig(model="m", retry=FAST),
                    (Message(Role.USER, "hi"),),
                    emit=EventRecorder(),
                ),
                BOUND,
            )
    assert len(server.requests) == 1  # not retried: the same bytes would come again
