"""A provider's context-length error, through real HTTP on loopback (issue 14 item 8).

The error bodies are built from the providers' documented formats: OpenAI-compatible
(``error.code = "context_length_exceeded"``, "This model's maximum context length is ..."),
llama.cpp's server (``error.type = "exceed_context_size_error"``, "the request exceeds the
available context size, try increasing it") and Anthropic ("prompt is too long: N tokens > M
maximum"). The turn must trim harder and send once more — not fail generically — and a second
refusal is the typed CONTEXT_LENGTH_EXCEEDED naming the budget. A turn with a policy sends only
its window, also across a tool loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx
import pytest
from provider_bodies import anthropic_text, sse

from engine import (
    AnthropicProvider,
    ContextLengthExceededError,
    ContextPolicy,
    Message,
    Notice,
    OpenAIChatProvider,
    ProviderHTTPError,
    RetryPolicy,
    Role,
    Tool,
    ToolRegistry,
    TurnConfig,
    TurnEvent,
    is_context_length_error,
    run_turn,
)
from engine.testing import LoopbackServer, Reply

BOUND = 20  # seconds: a safety net only, never a speed assertion
FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01)

OPENAI_TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 8192 tokens. However, your messages "
        "resulted in 9120 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}
LLAMA_TOO_LONG = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
        "n_prompt_tokens": 2310,
        "n_ctx": 2048,
    }
}
ANTHROPIC_TOO_LONG = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "prompt is too long: 208310 tokens > 200000 maximum",
    },
}


def openai_text(text: str) -> bytes:
    return sse(
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
        "[DONE]",
    )


def openai_call(cid: str) -> bytes:
    call = {"index": 0, "id": cid, "type": "function",
            "function": {"name": "clock", "arguments": "{}"}}  # fmt: skip
    return sse(
        {"choices": [{"index": 0, "delta": {"tool_calls": [call]}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
        "[DONE]",
    )


def long_history(turns: int = 40) -> tuple[Message, ...]:
    out: list[Message] = []
    for i in range(turns):
        out += [Message(Role.USER, f"question {i} " * 10), Message(Role.ASSISTANT, f"a{i} " * 10)]
    out.append(Message(Role.USER, "the newest question"))
    return tuple(out)


class Recorder(list[TurnEvent]):
    def __call__(self, event: TurnEvent) -> None:
        self.append(event)

    def notices(self, code: str) -> list[Notice]:
        return [e for e in self if isinstance(e, Notice) and e.code == code]


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


def clock_tools() -> ToolRegistry:
    async def clock(_args: Mapping[str, Any]) -> str:
        return "12:00 " * 20

    registry = ToolRegistry()
    registry.add(Tool("clock", "time", clock))
    return registry


async def turn(
    provider: Any, policy: ContextPolicy, history: tuple[Message, ...] | None = None
) -> tuple[Any, Recorder]:
    rec = Recorder()
    config = TurnConfig(model="m", system="be brief", retry=FAST, context=policy)
    result = await asyncio.wait_for(
        run_turn(provider, config, history or long_history(), emit=rec, tools=clock_tools()),
        BOUND,
    )
    return result, rec


def sent_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] != "system"]


@pytest.mark.parametrize(
    ("body", "status"), [(OPENAI_TOO_LONG, 400), (LLAMA_TOO_LONG, 400)], ids=["openai", "llama"]
)
async def test_openai_compatible_context_error_trims_and_retries_once(
    client: httpx.AsyncClient, body: dict[str, Any], status: int
) -> None:
    replies = [Reply.json(status, body), Reply(body=openai_text("fine"))]
    async with LoopbackServer(replies) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1")
        result, rec = await turn(provider, ContextPolicy.unbounded())
    assert result.messages[-1].text == "fine"
    first, second = (sent_messages(r.json()) for r in server.requests)
    assert len(first) == 81  # unbounded: everything
    assert 0 < len(second) < len(first) / 2 + 2  # about half of it, by the estimate
    assert second[-1]["content"] == "the newest question"
    assert second[0]["role"] == "user"  # trimmed at a turn
    assert server.requests[1].json()["messages"][0] == {"role": "system", "content": "be brief"}
    assert len(rec.notices("context_trimmed")) == 1


async def test_anthropic_prompt_too_long_trims_and_retries_once(client: httpx.AsyncClient) -> None:
    replies = [Reply.json(400, ANTHROPIC_TOO_LONG), Reply(body=anthropic_text("fine"))]
    async with LoopbackServer(replies) as server:
        result, rec = await turn(AnthropicProvider(client, server.url), ContextPolicy(2_000))
    assert result.messages[-1].text == "fine"
    first, second = (r.json() for r in server.requests)
    assert len(second["messages"]) < len(first["messages"])
    assert second["system"] == first["system"]  # the system prompt is always kept
    assert second["messages"][0]["role"] == "user"
    assert len(rec.notices("context_trimmed")) == 1


async def test_a_second_refusal_is_the_typed_error_naming_the_budget(
    client: httpx.AsyncClient,
) -> None:
    replies = [Reply.json(400, OPENAI_TOO_LONG), Reply.json(400, OPENAI_TOO_LONG)]
    async with LoopbackServer(replies) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1")
        with pytest.raises(ContextLengthExceededError) as caught:
            await turn(provider, ContextPolicy(max_tokens=3_000, max_messages=500))
    assert len(server.requests) == 2  # exactly one retry
    assert caught.value.code == "CONTEXT_LENGTH_EXCEEDED"
    assert "3,000 estimated tokens and 500 messages" in caught.value.message
    assert "maximum context length" in caught.value.message  # the provider's own words


async def test_other_client_errors_are_not_mistaken_for_context_errors(
    client: httpx.AsyncClient,
) -> None:
    bad = {"error": {"message": "Invalid value for 'temperature'", "type": "invalid_request_error",
                     "param": "temperature", "code": "invalid_value"}}  # fmt: skip
    async with LoopbackServer([Reply.json(400, bad)]) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1")
        with pytest.raises(ProviderHTTPError) as caught:
            await turn(provider, ContextPolicy())
    assert not is_context_length_error(caught.value)
    assert len(server.requests) == 1


async def test_a_policy_sends_only_the_window_across_a_tool_loop(
    client: httpx.AsyncClient,
) -> None:
    replies = [Reply(body=openai_call(f"c{i}")) for i in range(6)]
    replies.append(Reply(body=openai_text("done")))
    budget = ContextPolicy(max_tokens=200)
    async with LoopbackServer(replies) as server:
        result, _ = await turn(OpenAIChatProvider(client, server.url + "/v1"), budget)
    assert result.messages[-1].text == "done"
    for request in server.requests:
        sent = sent_messages(request.json())
        # Every tool result follows its call (the API would reject an orphan result)...
        open_calls: set[str] = set()
        for m in sent:
            if m["role"] == "tool":
                assert m["tool_call_id"] in open_calls
            open_calls = {c["id"] for c in m.get("tool_calls", [])} or (
                open_calls if m["role"] == "tool" else set()
            )
        # ...the question is always there, and the old turns are not.
        assert any(m["content"] == "the newest question" for m in sent)
        assert len(sent) < 12
