"""The second half of a conversation, through real HTTP on loopback: what the engine sends back
after a provider's answer, and stream shapes real gateways produce (issue 14, items 1-6).

Every stream here is built from the provider's documented format (the shapes match the recorded
ones in ``../shared/fixtures/provider-streams``); each test runs a real turn (or a provider stream)
against :class:`engine.testing.LoopbackServer` and reads the request bodies the server received.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import httpx
import pytest
from provider_bodies import anthropic_text, delta, sse

from engine import (
    AnthropicProvider,
    Message,
    OpenAIChatProvider,
    ProviderTimeoutError,
    RetryPolicy,
    Role,
    StopReason,
    Tool,
    ToolRegistry,
    TurnConfig,
    Usage,
    UsageReported,
    run_turn,
)
from engine.testing import EventRecorder, LoopbackServer, Reply

BOUND = 20  # seconds: a safety net only, never a speed assertion
FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01, max_stream_restarts=1)
HISTORY = (Message(Role.USER, "weather in Paris, and the time?"),)


def usage(prompt: int = 5, completion: int = 3, **extra: Any) -> dict[str, Any]:
    return {"choices": [], "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                                     **extra}}  # fmt: skip


TEXT_ANSWER = sse(delta(content="Sunny."), delta("stop"), usage(), "[DONE]")


def tools() -> ToolRegistry:
    async def weather(args: Mapping[str, Any]) -> str:
        return f"sunny in {args['city']}"

    async def clock(args: Mapping[str, Any]) -> str:
        return f"12:00 {args['tz']}"

    registry = ToolRegistry()
    registry.add(Tool("weather", "weather", weather))
    registry.add(Tool("clock", "time", clock))
    return registry


async def turn(provider: Any, history: tuple[Message, ...] = HISTORY) -> tuple[Any, EventRecorder]:
    rec = EventRecorder()
    result = await asyncio.wait_for(
        run_turn(provider, TurnConfig(model="m", retry=FAST), history, emit=rec, tools=tools()),
        BOUND,
    )
    return result, rec


def assistant_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [m for m in body["messages"] if m["role"] == "assistant"]


# --- 1. reasoning goes back in the field it came in -------------------------------------------


def reasoning_then_call(field: str) -> bytes:
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
    return sse(
        delta(role="assistant", **{field: "Need the weather."}),
        delta(tool_calls=[call]),
        delta("tool_calls"),
        usage(),
        "[DONE]",
    )


@pytest.mark.parametrize("field", ["reasoning", "reasoning_content"])
async def test_reasoning_goes_back_in_the_field_the_provider_used(
    client: httpx.AsyncClient, field: str
) -> None:
    # Groq streams `reasoning` and rejects `reasoning_content` (HTTP 400); DeepSeek and llama.cpp
    # stream `reasoning_content` and DeepSeek requires it back after a tool call.
    replies = [Reply(body=reasoning_then_call(field)), Reply(body=TEXT_ANSWER)]
    async with LoopbackServer(replies) as server:
        result, _ = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert result.messages[0].reasoning_field == field
    [assistant] = assistant_messages(server.requests[1].json())
    assert assistant[field] == "Need the weather."
    other = {"reasoning", "reasoning_content"} - {field}
    assert not other & set(assistant), f"sent {other} to a provider that used {field!r}"
    assert result.messages[-1].text == "Sunny."


async def test_reasoning_field_none_sends_no_reasoning_back(client: httpx.AsyncClient) -> None:
    replies = [Reply(body=reasoning_then_call("reasoning")), Reply(body=TEXT_ANSWER)]
    async with LoopbackServer(replies) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1", reasoning_field="none")
        await turn(provider)
    [assistant] = assistant_messages(server.requests[1].json())
    assert not {"reasoning", "reasoning_content", "reasoning_details"} & set(assistant)


async def test_openrouter_reasoning_details_go_back_verbatim(client: httpx.AsyncClient) -> None:
    # OpenRouter streams plain `reasoning` plus structured `reasoning_details` (here a signed
    # Anthropic-model block split over deltas): the details go back merged, with the signature.
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}  # fmt: skip
    text = {"type": "reasoning.text", "index": 0, "format": "anthropic-claude-v1"}
    body = sse(
        delta(role="assistant", reasoning="Need ", reasoning_details=[{**text, "text": "Need "}]),
        delta(reasoning="weather.", reasoning_details=[{**text, "text": "weather."}]),
        delta(reasoning_details=[{**text, "text": "", "signature": "sig-1"}]),
        delta(tool_calls=[call]),
        delta("tool_calls"),
        usage(),
        "[DONE]",
    )
    async with LoopbackServer([Reply(body=body), Reply(body=TEXT_ANSWER)]) as server:
        result, rec = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert result.messages[0].reasoning == "Need weather."
    [assistant] = assistant_messages(server.requests[1].json())
    assert assistant["reasoning_details"] == [
        {**text, "text": "Need weather.", "signature": "sig-1"}
    ]
    assert "reasoning" not in assistant  # the details carry it; sending both would duplicate it
    assert rec.notices("delta") == []  # reasoning_details is known, not an "unknown field"


# --- 2. tool calls without index ----------------------------------------------------------------


def gemini_call(call_id: str, name: str, arguments: str, **extra: Any) -> dict[str, Any]:
    # Gemini's OpenAI-compatible endpoint: each call whole in one delta, no index (or index 0)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments},
            **extra}  # fmt: skip


@pytest.mark.parametrize("index", [None, 0], ids=["no-index", "all-index-0"])
async def test_calls_without_distinct_index_stay_apart(
    client: httpx.AsyncClient, index: int | None
) -> None:
    first = gemini_call("call_a", "weather", '{"city": "Paris"}')
    second = gemini_call("call_b", "clock", '{"tz": "CET"}')
    if index is not None:
        first["index"] = second["index"] = index
    body = sse(
        delta(role="assistant", tool_calls=[first]),
        delta(tool_calls=[second]),
        delta("tool_calls"),
        usage(),
        "[DONE]",
    )
    async with LoopbackServer([Reply(body=body), Reply(body=TEXT_ANSWER)]) as server:
        result, rec = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    calls = result.messages[0].tool_calls
    assert [(c.call_id, c.name, c.arguments) for c in calls] == [
        ("call_a", "weather", '{"city": "Paris"}'),
        ("call_b", "clock", '{"tz": "CET"}'),
    ]
    results = [m for m in result.messages if m.role is Role.TOOL]
    assert [(m.tool_call_id, m.text, m.is_error) for m in results] == [
        ("call_a", "sunny in Paris", False),
        ("call_b", "12:00 CET", False),
    ]
    assert rec.notices("invalid_tool_arguments") == []


async def test_gemini_thought_signature_goes_back_with_its_call(client: httpx.AsyncClient) -> None:
    extra = {"extra_content": {"google": {"thought_signature": "c2lnbmF0dXJl"}}}
    body = sse(
        delta(
            role="assistant", tool_calls=[gemini_call("a", "weather", '{"city": "Oslo"}', **extra)]
        ),
        delta("tool_calls"),
        usage(),
        "[DONE]",
    )
    async with LoopbackServer([Reply(body=body), Reply(body=TEXT_ANSWER)]) as server:
        await turn(OpenAIChatProvider(client, server.url + "/v1"))
    [assistant] = assistant_messages(server.requests[1].json())
    assert assistant["tool_calls"][0]["extra_content"] == extra["extra_content"]


async def test_glued_arguments_are_reported_not_silently_run(client: httpx.AsyncClient) -> None:
    # Neither id nor index on the second call: nothing tells it apart from the first, so its
    # arguments continue the first call's. The result must not be silent.
    first = {"id": "call_a", "function": {"name": "weather", "arguments": '{"city": "Paris"}'}}
    second = {"function": {"arguments": '{"tz": "CET"}'}}
    body = sse(
        delta(role="assistant", tool_calls=[first]),
        delta(tool_calls=[second]),
        delta("tool_calls"),
        usage(),
        "[DONE]",
    )
    async with LoopbackServer([Reply(body=body), Reply(body=TEXT_ANSWER)]) as server:
        result, rec = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    [notice] = rec.notices("invalid_tool_arguments")
    assert "call_a" in notice.message
    assert "weather" in notice.message
    [tool_result] = [m for m in result.messages if m.role is Role.TOOL]
    assert tool_result.is_error  # the model is told, too


# --- 3. Anthropic thinking blocks, one by one --------------------------------------------------


def anthropic_thinking_stream() -> bytes:
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}},
    ]
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = [
        ({"type": "thinking", "thinking": "", "signature": ""},
         [{"type": "thinking_delta", "thinking": "First "}, {"type": "thinking_delta",
           "thinking": "thought."}, {"type": "signature_delta", "signature": "SIG-ONE"}]),
        ({"type": "redacted_thinking", "data": "ENCRYPTED-DATA"}, []),
        ({"type": "text", "text": ""}, [{"type": "text_delta", "text": "Let me look."}]),
        ({"type": "thinking", "thinking": "", "signature": ""},
         [{"type": "thinking_delta", "thinking": "Second thought."},
          {"type": "signature_delta", "signature": "SIG-TWO"}]),
        ({"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
         [{"type": "input_json_delta", "partial_json": '{"city": "Paris"}'}]),
    ]  # fmt: skip
    for index, (block, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": block})
        events += [{"type": "content_block_delta", "index": index, "delta": d} for d in deltas]
        events.append({"type": "content_block_stop", "index": index})
    events += [
        {"type": "message_delta", "delta": {"stop_reason": "tool_use"},
         "usage": {"output_tokens": 40}},
        {"type": "message_stop"},
    ]  # fmt: skip
    return sse(*events, event=True)


async def test_anthropic_thinking_blocks_go_back_block_by_block(
    client: httpx.AsyncClient,
) -> None:
    replies = [Reply(body=anthropic_thinking_stream()), Reply(body=anthropic_text("Sunny."))]
    async with LoopbackServer(replies) as server:
        result, _ = await turn(AnthropicProvider(client, server.url))
    assert result.messages[0].reasoning == "First thought.Second thought."
    assistant = server.requests[1].json()["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == [  # every block back, each where it stood
        {"type": "thinking", "thinking": "First thought.", "signature": "SIG-ONE"},
        {"type": "redacted_thinking", "data": "ENCRYPTED-DATA"},
        {"type": "text", "text": "Let me look."},
        {"type": "thinking", "thinking": "Second thought.", "signature": "SIG-TWO"},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Paris"}},
    ]


async def test_a_stored_single_signature_message_still_goes_back(
    client: httpx.AsyncClient,
) -> None:
    # Histories written before blocks were kept: one reasoning text + one signature.
    old = Message(Role.ASSISTANT, "hi", reasoning="r", reasoning_signature="sig")
    history = (Message(Role.USER, "a"), old, Message(Role.USER, "b"))
    async with LoopbackServer([Reply(body=anthropic_text("ok"))]) as server:
        await turn(AnthropicProvider(client, server.url), history)
    assert server.requests[0].json()["messages"][1]["content"][0] == {
        "type": "thinking", "thinking": "r", "signature": "sig"
    }  # fmt: skip


# --- 4. usage semantics -----------------------------------------------------------------------


async def test_xai_reasoning_outside_completion_tokens_is_normalised(
    client: httpx.AsyncClient,
) -> None:
    # Figures of a real xAI stream: 26 completion + 227 reasoning, provider total 560.
    xai_usage = usage(307, 26, total_tokens=560,
                      completion_tokens_details={"reasoning_tokens": 227})  # fmt: skip
    body = sse(delta(role="assistant", content="Hi."), delta("stop"), xai_usage, "[DONE]")
    async with LoopbackServer([Reply(body=body)]) as server:
        result, _ = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert result.usage == Usage(input_tokens=307, output_tokens=253, reasoning_tokens=227)
    assert result.usage.total_tokens == 560


async def test_openai_convention_is_left_alone(client: httpx.AsyncClient) -> None:
    # OpenAI/DeepSeek/Groq: completion already includes reasoning (total = prompt + completion).
    openai_usage = usage(10, 300, total_tokens=310,
                         completion_tokens_details={"reasoning_tokens": 200})  # fmt: skip
    body = sse(delta(content="Hi."), delta("stop"), openai_usage, "[DONE]")
    async with LoopbackServer([Reply(body=body)]) as server:
        result, _ = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert result.usage == Usage(input_tokens=10, output_tokens=300, reasoning_tokens=200)


async def test_groq_and_deepseek_usage_shapes(client: httpx.AsyncClient) -> None:
    # Groq: a stream's usage in x_groq.usage; DeepSeek: the cached prompt as prompt_cache_hit_tokens
    groq = {"choices": [], "x_groq": {"id": "req_1", "usage": {"prompt_tokens": 8,
            "completion_tokens": 4, "total_tokens": 12, "queue_time": 0.01}}}  # fmt: skip
    deepseek = usage(100, 7, total_tokens=107, prompt_cache_hit_tokens=64,
                     prompt_cache_miss_tokens=36)  # fmt: skip
    replies = [Reply(body=sse(delta(content="a"), delta("stop"), body, "[DONE]"))
               for body in (groq, deepseek)]  # fmt: skip
    async with LoopbackServer(replies) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1")
        (first, rec_first), (second, rec_second) = [await turn(provider) for _ in range(2)]
    assert first.usage == Usage(input_tokens=8, output_tokens=4)
    assert second.usage == Usage(input_tokens=100, output_tokens=7, cache_read_tokens=64)
    assert rec_first.notices("no_usage") == rec_second.notices("no_usage") == []


async def test_an_unknown_usage_convention_is_noticed(client: httpx.AsyncClient) -> None:
    odd = usage(10, 5, total_tokens=99)  # neither convention explains this total
    body = sse(delta(content="Hi."), delta("stop"), odd, "[DONE]")
    async with LoopbackServer([Reply(body=body)]) as server:
        result, rec = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert result.usage == Usage(input_tokens=10, output_tokens=5)
    [notice] = rec.notices("usage_mismatch")
    assert "99" in notice.message


async def test_missing_usage_chunk_is_noticed(client: httpx.AsyncClient) -> None:
    body = sse(delta(content="Hi."), delta("stop"), "[DONE]")  # usage was asked for, never came
    async with LoopbackServer([Reply(body=body)]) as server:
        result, rec = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert server.requests[0].json()["stream_options"] == {"include_usage": True}
    assert result.messages[-1].text == "Hi."
    assert len(rec.notices("no_usage")) == 1
    assert [e.usage for e in rec if isinstance(e, UsageReported)] == [Usage()]


# --- 5. deadline --------------------------------------------------------------------------------


async def test_keep_alives_do_not_extend_the_request_deadline(client: httpx.AsyncClient) -> None:
    # A stream that only ever sends keep-alive comments (one every 50 ms: far inside the idle
    # timeout), then hangs. Only the deadline can end it.
    keep_alives = Reply(body=b": keep-alive\n\n" * 4000, chunk_sizes=(14,), chunk_delay_s=0.05,
                        then="hang")  # fmt: skip
    retrying = RetryPolicy(max_attempts=3, initial_backoff_s=0.001, max_backoff_s=0.01)
    async with LoopbackServer([keep_alives], default=keep_alives) as server:
        provider = OpenAIChatProvider(
            client, server.url + "/v1", idle_timeout_s=30, request_deadline_s=0.5
        )
        with pytest.raises(ProviderTimeoutError, match=r"deadline of 0\.5s") as caught:
            await asyncio.wait_for(
                run_turn(provider, TurnConfig(model="m", retry=retrying), HISTORY,
                         emit=EventRecorder()),
                BOUND,
            )  # fmt: skip
    assert caught.value.code == "PROVIDER_TIMEOUT"
    assert len(server.requests) == 1  # not retried: the next attempt would get the same bound


async def test_deadline_does_not_cut_a_stream_that_finishes_in_time(
    client: httpx.AsyncClient,
) -> None:
    async with LoopbackServer([Reply(body=TEXT_ANSWER)]) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1", request_deadline_s=30)
        result, _ = await turn(provider)
    assert result.messages[-1].text == "Sunny."


# --- 6. refusal detail --------------------------------------------------------------------------


async def test_anthropic_refusal_explanation_reaches_the_user(client: httpx.AsyncClient) -> None:
    details = {"type": "refusal", "category": "cyber",
               "explanation": "This request was refused due to policy."}  # fmt: skip
    body = anthropic_text("", stop="refusal", stop_details=details)
    async with LoopbackServer([Reply(body=body)]) as server:
        result, _ = await turn(AnthropicProvider(client, server.url))
    assert result.stop_reason is StopReason.REFUSAL
    assert result.messages[-1].text == "This request was refused due to policy. (cyber)"
