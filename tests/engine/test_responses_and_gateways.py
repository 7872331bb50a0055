"""Provider breadth (issue 14, item 7), through real HTTP on loopback.

- OpenAI Responses (``kind = "openai_responses"``): streams built from the event types the official
  ``openai`` SDK documents (``openai/types/responses/*_event.py``) are read by the engine and by the
  SDK's own Responses stream helper (``client.responses.stream(...)``), and must agree: text
  (``output_text``, and the SDK's running text snapshot), function calls (the SDK's arguments
  snapshot too), reasoning summaries (parts joined by a blank line), reasoning items (kept whole,
  to be sent back), usage and status. Then a tool loop (what goes back as ``input``), a cut
  stream, ``response.failed`` and cancellation.
- Gemini's OpenAI-compatible endpoint and OpenRouter, both through ``openai_chat``: their stream
  shapes (calls without ``index``, ``extra_content`` thought signatures; ``reasoning`` +
  ``reasoning_details``) compared with the official SDK's chat stream accumulation where the SDK can
  read them (the SDK needs an ``index`` on every tool-call delta, so Gemini's calls are checked
  against the stream we built).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import httpx
import openai
import pytest

from engine import (
    Accumulator,
    Message,
    ModelRequest,
    OpenAIChatProvider,
    OpenAIResponsesProvider,
    ProviderStreamError,
    RetryPolicy,
    Role,
    StopReason,
    Tool,
    ToolRegistry,
    TurnConfig,
    TurnEvent,
    Usage,
    make_provider,
    run_turn,
)
from engine.testing import EventRecorder, LoopbackServer, Reply

BOUND = 20  # seconds: a safety net only
SIZES = (3, 1, 17, 64, 5, 250)
REQUEST = ModelRequest(model="m", messages=(Message(Role.USER, "hi"),))
FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01, max_stream_restarts=1)


def sse(events: list[dict[str, Any]]) -> bytes:
    out = b""
    for seq, event in enumerate(events):
        event = {**event, "sequence_number": seq}
        out += f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode()
    return out


# --- building Responses streams from the documented event types -------------------------------


def response(status: str, output: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "resp_1", "object": "response", "created_at": 1700000000, "model": "m",
        "status": status, "output": output, "parallel_tool_calls": True, "tool_choice": "auto",
        "tools": [], "error": None, "incomplete_details": None, "instructions": None,
        "metadata": {}, "temperature": 1.0, "top_p": 1.0, **extra,
    }  # fmt: skip


USAGE = {"input_tokens": 120,
         "input_tokens_details": {"cached_tokens": 64, "cache_write_tokens": 0},
         "output_tokens": 90, "output_tokens_details": {"reasoning_tokens": 40},
         "total_tokens": 210}  # fmt: skip


def reasoning_events(index: int, summaries: list[list[str]]) -> list[dict[str, Any]]:
    item_id = f"rs_{index}"
    item = {"type": "reasoning", "id": item_id, "summary": []}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": index, "item": item}
    ]
    for part, pieces in enumerate(summaries):
        where = {"item_id": item_id, "output_index": index, "summary_index": part}
        events.append({"type": "response.reasoning_summary_part.added", **where,
                       "part": {"type": "summary_text", "text": ""}})  # fmt: skip
        events += [
            {"type": "response.reasoning_summary_text.delta", **where, "delta": p} for p in pieces
        ]
        text = "".join(pieces)
        events.append({"type": "response.reasoning_summary_text.done", **where, "text": text})
        events.append({"type": "response.reasoning_summary_part.done", **where,
                       "part": {"type": "summary_text", "text": text}})  # fmt: skip
    done = {**item, "summary": [{"type": "summary_text", "text": "".join(p)} for p in summaries],
            "encrypted_content": f"ENC-{index}"}  # fmt: skip
    events.append({"type": "response.output_item.done", "output_index": index, "item": done})
    return events


def message_events(
    index: int, pieces: list[str], kind: str = "output_text"
) -> list[dict[str, Any]]:
    item_id = f"msg_{index}"
    item = {"type": "message", "id": item_id, "role": "assistant", "status": "in_progress",
            "content": []}  # fmt: skip
    where = {"item_id": item_id, "output_index": index, "content_index": 0}
    empty = (
        {"type": "output_text", "text": "", "annotations": []}
        if kind == "output_text"
        else {"type": "refusal", "refusal": ""}
    )
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": index, "item": item},
        {"type": "response.content_part.added", **where, "part": empty},
    ]
    text = "".join(pieces)
    if kind == "output_text":
        events += [{"type": "response.output_text.delta", **where, "delta": p, "logprobs": []}
                   for p in pieces]  # fmt: skip
        events.append({"type": "response.output_text.done", **where, "text": text, "logprobs": []})
        part = {"type": "output_text", "text": text, "annotations": []}
    else:
        events += [{"type": "response.refusal.delta", **where, "delta": p} for p in pieces]
        events.append({"type": "response.refusal.done", **where, "refusal": text})
        part = {"type": "refusal", "refusal": text}
    events.append({"type": "response.content_part.done", **where, "part": part})
    done = {**item, "status": "completed", "content": [part]}
    events.append({"type": "response.output_item.done", "output_index": index, "item": done})
    return events


def call_events(index: int, call_id: str, name: str, pieces: list[str]) -> list[dict[str, Any]]:
    item = {"type": "function_call", "id": f"fc_{index}", "call_id": call_id, "name": name,
            "arguments": "", "status": "in_progress"}  # fmt: skip
    where = {"item_id": f"fc_{index}", "output_index": index}
    events: list[dict[str, Any]] = [
        {"type": "response.output_item.added", "output_index": index, "item": item}
    ]
    events += [
        {"type": "response.function_call_arguments.delta", **where, "delta": p} for p in pieces
    ]
    arguments = "".join(pieces)
    events.append({"type": "response.function_call_arguments.done", **where,
                   "arguments": arguments})  # fmt: skip
    done = {**item, "arguments": arguments, "status": "completed"}
    events.append({"type": "response.output_item.done", "output_index": index, "item": done})
    return events


def items_of(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e["type"] == "response.output_item.done"]


def stream(body: list[dict[str, Any]], end: str = "response.completed", **extra: Any) -> bytes:
    status = "completed" if end == "response.completed" else "incomplete"
    return sse(
        [
            {"type": "response.created", "response": response("in_progress", [])},
            {"type": "response.in_progress", "response": response("in_progress", [])},
            *body,
            {"type": end, "response": response(status, items_of(body), usage=USAGE, **extra)},
        ]
    )


STREAMS = {
    "reasoning_then_text": stream(
        reasoning_events(0, [["Think", "ing a"], ["Then more."]])
        + message_events(1, ["Hel", "lo, ", "world", "!"])
    ),
    "parallel_calls": stream(
        reasoning_events(0, [["Two lookups."]])
        + call_events(1, "call_a", "weather", ['{"ci', 'ty": "Pa', 'ris"}'])
        + call_events(2, "call_b", "clock", ['{"tz":', ' "CET"}'])
    ),
    "text_and_call": stream(
        message_events(0, ["Checking."]) + call_events(1, "call_c", "clock", ["{}"])
    ),
    "refusal": stream(message_events(0, ["I can't ", "help with that."], kind="refusal")),
}


async def engine_read(data: bytes) -> tuple[Message, Usage, Accumulator]:
    async with (
        LoopbackServer([Reply(body=data, chunk_sizes=SIZES)]) as server,
        httpx.AsyncClient() as client,
    ):
        provider = OpenAIResponsesProvider(client, server.url + "/v1")
        acc = Accumulator()
        async for event in provider.stream(REQUEST):
            acc.add(event)
    assert server.requests[0].path == "/v1/responses"
    return acc.message(), acc.usage, acc


async def sdk_read(data: bytes) -> tuple[Any, list[Any]]:
    async with LoopbackServer([Reply(body=data, chunk_sizes=SIZES)]) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        seen: list[Any] = []
        async with client.responses.stream(model="m", input="hi") as events:
            async for event in events:
                seen.append(event)
            final = await events.get_final_response()
        await client.close()
    return final, seen


@pytest.mark.parametrize("name", sorted(STREAMS))
async def test_responses_stream_matches_the_sdk(name: str) -> None:
    data = STREAMS[name]
    message, usage, acc = await engine_read(data)
    final, seen = await sdk_read(data)
    output = list(final.output)

    refusals = "".join(
        c.refusal for o in output if o.type == "message" for c in o.content if c.type == "refusal"
    )
    assert message.text == final.output_text + refusals
    text_snapshots = [e.snapshot for e in seen if e.type == "response.output_text.delta"]
    if text_snapshots:
        assert message.text == text_snapshots[-1]  # the SDK's own accumulation of the deltas

    sdk_calls = [o for o in output if o.type == "function_call"]
    assert [(c.call_id, c.name, c.arguments) for c in message.tool_calls] == [
        (c.call_id, c.name, c.arguments) for c in sdk_calls
    ]
    args_snapshots: dict[int, str] = {}
    for e in seen:
        if e.type == "response.function_call_arguments.delta":
            args_snapshots[e.output_index] = e.snapshot
    assert [c.arguments for c in message.tool_calls] == [
        args_snapshots[i] for i in sorted(args_snapshots)
    ]

    reasoning_items = [o for o in output if o.type == "reasoning"]
    assert message.reasoning == "\n\n".join(
        s.text for item in reasoning_items for s in item.summary
    )
    kept = [json.loads(b.data) for b in message.reasoning_blocks]
    assert kept == [item.to_dict() for item in reasoning_items]  # whole, to be sent back

    u = final.usage
    assert usage == Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_tokens=u.input_tokens_details.cached_tokens,
        reasoning_tokens=u.output_tokens_details.reasoning_tokens,
    )
    assert usage.total_tokens == u.total_tokens
    expected = (
        StopReason.REFUSAL
        if refusals
        else StopReason.TOOL_USE
        if sdk_calls
        else StopReason.END_TURN
    )
    assert final.status == "completed"
    assert message.stop_reason is expected
    assert acc.notices == []


async def test_incomplete_response_is_length() -> None:
    data = stream(
        message_events(0, ["cut ", "short"]),
        end="response.incomplete",
        incomplete_details={"reason": "max_output_tokens"},
    )
    message, _, _ = await engine_read(data)
    _, seen = await sdk_read_partial(data)
    assert message.text == "cut short" == seen[-1].response.output[0].content[0].text
    assert seen[-1].type == "response.incomplete"
    assert message.stop_reason is StopReason.LENGTH


async def sdk_read_partial(data: bytes) -> tuple[None, list[Any]]:
    # get_final_response() needs response.completed; an incomplete response is read event-wise.
    async with LoopbackServer([Reply(body=data, chunk_sizes=SIZES)]) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        async with client.responses.stream(model="m", input="hi") as events:
            seen = [event async for event in events]
        await client.close()
    return None, seen


# --- the tool loop, failures, cancellation ------------------------------------------------------


def tools() -> ToolRegistry:
    async def weather(args: Mapping[str, Any]) -> str:
        return f"sunny in {args['city']}"

    async def clock(args: Mapping[str, Any]) -> str:
        return f"12:00 {args['tz']}"

    return ToolRegistry([Tool("weather", "weather", weather), Tool("clock", "time", clock)])


async def test_responses_tool_loop_sends_history_as_input_items(client: httpx.AsyncClient) -> None:
    replies = [Reply(body=STREAMS["parallel_calls"]), Reply(body=STREAMS["reasoning_then_text"])]
    async with LoopbackServer(replies) as server:
        provider = make_provider("openai_responses", client=client, base_url=server.url + "/v1")
        config = TurnConfig(model="m", system="be brief", max_tokens=50, retry=FAST)
        history = (Message(Role.USER, "weather and time?"),)
        result = await asyncio.wait_for(
            run_turn(provider, config, history, emit=EventRecorder(), tools=tools()), BOUND
        )
    assert result.stop_reason is StopReason.END_TURN
    assert result.messages[-1].text == "Hello, world!"
    first, second = (r.json() for r in server.requests)
    assert first["instructions"] == "be brief"
    assert first["max_output_tokens"] == 50
    assert first["stream"] is True
    assert [t["name"] for t in first["tools"]] == ["weather", "clock"]
    assert first["tools"][0]["type"] == "function"
    assert first["tools"][0]["strict"] is False
    sent = second["input"]
    assert sent[0] == {"role": "user", "content": "weather and time?"}
    assert sent[1]["type"] == "reasoning"
    assert sent[1]["encrypted_content"] == "ENC-0"
    assert sent[1]["summary"] == [{"type": "summary_text", "text": "Two lookups."}]
    assert sent[2:] == [
        {"type": "function_call", "call_id": "call_a", "name": "weather",
         "arguments": '{"city": "Paris"}'},
        {"type": "function_call", "call_id": "call_b", "name": "clock",
         "arguments": '{"tz": "CET"}'},
        {"type": "function_call_output", "call_id": "call_a", "output": "sunny in Paris"},
        {"type": "function_call_output", "call_id": "call_b", "output": "12:00 CET"},
    ]  # fmt: skip


async def test_responses_cut_stream_is_retried(client: httpx.AsyncClient) -> None:
    data = STREAMS["reasoning_then_text"]
    cut = Reply(body=data[: len(data) // 2], then="reset")
    async with LoopbackServer([cut, Reply(body=data)]) as server:
        provider = OpenAIResponsesProvider(client, server.url + "/v1")
        result = await asyncio.wait_for(
            run_turn(provider, TurnConfig(model="m", retry=FAST), REQUEST.messages,
                     emit=EventRecorder()),
            BOUND,
        )  # fmt: skip
    assert result.messages[-1].text == "Hello, world!"
    assert len(server.requests) == 2


async def test_responses_failed_event_raises(client: httpx.AsyncClient) -> None:
    failed = response("failed", [], error={"code": "invalid_prompt", "message": "no can do"})
    data = sse([{"type": "response.created", "response": response("in_progress", [])},
                {"type": "response.failed", "response": failed}])  # fmt: skip
    async with LoopbackServer([Reply(body=data)]) as server:
        provider = OpenAIResponsesProvider(client, server.url + "/v1")
        with pytest.raises(ProviderStreamError, match="invalid_prompt: no can do") as caught:
            async for _ in provider.stream(REQUEST):
                pass
    assert caught.value.retryable is False


async def test_responses_cancel_closes_the_stream(client: httpx.AsyncClient) -> None:
    head = sse(
        [
            {"type": "response.created", "response": response("in_progress", [])},
            *message_events(0, ["Hel"])[:3],
        ]
    )
    async with LoopbackServer([Reply(body=head, then="hang")]) as server:
        provider = OpenAIResponsesProvider(client, server.url + "/v1")
        streaming = asyncio.Event()

        def emit(event: TurnEvent) -> None:
            streaming.set()

        task = asyncio.create_task(run_turn(provider, TurnConfig(model="m"), REQUEST.messages,
                                            emit=emit))  # fmt: skip
        await asyncio.wait_for(streaming.wait(), BOUND)  # the first text delta arrived
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(server.disconnected.wait(), BOUND)
    assert server.disconnects == 1


# --- Gemini's OpenAI-compatible endpoint and OpenRouter, via openai_chat ----------------------


def chat(*chunks: dict[str, Any]) -> bytes:
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    return {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip


async def engine_chat(data: bytes) -> tuple[Message, Usage, Accumulator]:
    async with (
        LoopbackServer([Reply(body=data, chunk_sizes=SIZES)]) as server,
        httpx.AsyncClient() as client,
    ):
        acc = Accumulator()
        async for event in OpenAIChatProvider(client, server.url + "/v1").stream(REQUEST):
            acc.add(event)
    return acc.message(), acc.usage, acc


async def sdk_chat(data: bytes) -> Any:
    async with LoopbackServer([Reply(body=data, chunk_sizes=SIZES)]) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        async with client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hi"}]
        ) as events:
            async for _ in events:
                pass
            completion = await events.get_final_completion()
        await client.close()
    return completion


GEMINI_USAGE = {"prompt_tokens": 12, "completion_tokens": 20, "total_tokens": 62,
                "completion_tokens_details": {"reasoning_tokens": 30}}  # fmt: skip


async def test_gemini_openai_compatible_stream() -> None:
    # Gemini: thought summaries as `reasoning_content` (include_thoughts), each call whole in one
    # delta without `index`, its thought signature in `extra_content`; reasoning counted outside
    # completion_tokens (total = prompt + completion + reasoning).
    signature = {"google": {"thought_signature": "c2ln"}}
    calls = [
        {"id": "g1", "type": "function", "extra_content": signature,
         "function": {"name": "weather", "arguments": '{"city":"Paris"}'}},
        {"id": "g2", "type": "function",
         "function": {"name": "clock", "arguments": '{"tz":"CET"}'}},
    ]  # fmt: skip
    data = chat(
        choice({"role": "assistant", "reasoning_content": "Two tools."}),
        choice({"content": "Looking up."}),
        choice({"tool_calls": [calls[0]]}),
        choice({"tool_calls": [calls[1]]}, "tool_calls"),
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [], "usage": GEMINI_USAGE},
    )  # fmt: skip
    message, usage, acc = await engine_chat(data)
    assert message.text == "Looking up."
    assert message.reasoning == "Two tools."
    assert message.reasoning_field == "reasoning_content"
    assert [(c.call_id, c.name, json.loads(c.arguments)) for c in message.tool_calls] == [
        ("g1", "weather", {"city": "Paris"}),
        ("g2", "clock", {"tz": "CET"}),
    ]
    assert json.loads(message.tool_calls[0].extra) == signature
    assert message.tool_calls[1].extra == ""
    assert message.stop_reason is StopReason.TOOL_USE
    assert usage == Usage(input_tokens=12, output_tokens=50, reasoning_tokens=30)
    assert usage.total_tokens == GEMINI_USAGE["total_tokens"]
    assert acc.notices == []


async def test_openrouter_stream_matches_the_sdk() -> None:
    # OpenRouter: `reasoning` text plus `reasoning_details` (a signed text entry and an encrypted
    # one), merged by index; `format` sent once here, as the SDK's generic merge would repeat it.
    data = chat(
        choice({"role": "assistant", "reasoning": "Let me ",
                "reasoning_details": [{"type": "reasoning.text", "text": "Let me ", "index": 0,
                                       "format": "anthropic-claude-v1"}]}),
        choice({"reasoning": "think.",
                "reasoning_details": [{"type": "reasoning.text", "text": "think.", "index": 0}]}),
        choice({"reasoning_details": [{"type": "reasoning.text", "signature": "SIG", "index": 0}]}),
        choice({"reasoning_details": [{"type": "reasoning.encrypted", "data": "ENC", "index": 1,
                                       "format": "anthropic-claude-v1"}]}),
        choice({"content": "Done."}),
        choice({}, "stop"),
        {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
         "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9, "total_tokens": 16,
                                  "completion_tokens_details": {"reasoning_tokens": 4}}},
    )  # fmt: skip
    message, usage, acc = await engine_chat(data)
    completion = await sdk_chat(data)
    sdk = completion.choices[0].message
    extra = sdk.model_extra or {}
    assert message.text == sdk.content
    assert message.reasoning == extra["reasoning"]
    assert message.reasoning_field == "reasoning"
    [details] = message.reasoning_blocks
    assert details.kind == "reasoning_details"
    assert json.loads(details.data) == extra["reasoning_details"]
    u = completion.usage
    assert usage == Usage(
        input_tokens=u.prompt_tokens,
        output_tokens=u.completion_tokens,
        reasoning_tokens=u.completion_tokens_details.reasoning_tokens,
    )
    assert message.stop_reason is StopReason.END_TURN
    assert acc.notices == []


async def test_responses_errors_never_carry_the_key(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "sk-live-0f1e2d3c4b5a69788796a5b4c3d2e1f0"
    monkeypatch.setenv("WR_RESPONSES_TEST_KEY", key)

    def echo_key(request: Any) -> Reply:  # a careless proxy quoting the credential it got
        said = request.headers["authorization"]
        return Reply(body=sse([{"type": "error", "code": "invalid_api_key",
                                "message": f"bad key {said}"}]))  # fmt: skip

    async with LoopbackServer(default=echo_key) as server:
        provider = OpenAIResponsesProvider(
            client, server.url + "/v1", api_key_env="WR_RESPONSES_TEST_KEY"
        )
        with pytest.raises(ProviderStreamError) as caught:
            async for _ in provider.stream(REQUEST):
                pass
    assert server.requests[0].headers["authorization"] == f"Bearer {key}"
    assert key[:12] not in str(caught.value)
    assert "invalid_api_key" in str(caught.value)
