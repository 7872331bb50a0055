"""A cancel that cuts the model's stream reports the answer so far (engine.PartialMessage) and the
usage the provider had reported — through a real HTTP stream on loopback that goes silent."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from serving import eventually

import engine
from engine import AnthropicProvider, OpenAIChatProvider
from engine.testing import LoopbackServer, Reply

BOUND = 30.0  # a safety net, never a speed assertion


def _anthropic(*events: tuple[str, dict[str, object]]) -> bytes:
    return b"".join(f"event: {k}\ndata: {json.dumps(d)}\n\n".encode() for k, d in events)


MESSAGE_START: tuple[str, dict[str, object]] = (
    "message_start",
    {
        "type": "message_start",
        "message": {
            "id": "m1",
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": "m",
            "usage": {"input_tokens": 21, "output_tokens": 1},
        },
    },
)


def _block_start(index: int, block: dict[str, object]) -> tuple[str, dict[str, object]]:
    return (
        "content_block_start",
        {"type": "content_block_start", "index": index, "content_block": block},
    )


def _delta(index: int, delta: dict[str, object]) -> tuple[str, dict[str, object]]:
    return ("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


async def _cut(
    provider: engine.Provider, server: LoopbackServer, last: engine.TurnEvent
) -> list[engine.TurnEvent]:
    """Run a turn, cancel it once ``last`` (the last event the body produces) was emitted and the
    server waits, and return the events."""
    events: list[engine.TurnEvent] = []
    config = engine.TurnConfig(model="m", retry=engine.RetryPolicy(max_attempts=1))
    history = [engine.Message(engine.Role.USER, "hi")]
    task = asyncio.create_task(run_turn_quietly(provider, config, history, events))
    await eventually(lambda: last in events, within=BOUND, interval=0.01, what="the cut point")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(server.disconnected.wait(), BOUND)
    return events


async def run_turn_quietly(
    provider: engine.Provider,
    config: engine.TurnConfig,
    history: list[engine.Message],
    events: list[engine.TurnEvent],
) -> None:
    await engine.run_turn(provider, config, history, emit=events.append)


async def test_anthropic_cut_reports_text_reasoning_and_usage_without_tool_calls(
    client: httpx.AsyncClient,
) -> None:
    body = _anthropic(
        MESSAGE_START,
        _block_start(0, {"type": "thinking", "thinking": ""}),
        _delta(0, {"type": "thinking_delta", "thinking": "hmm"}),
        _block_start(1, {"type": "text", "text": ""}),
        _delta(1, {"type": "text_delta", "text": "Hello, "}),
        _delta(1, {"type": "text_delta", "text": "wor"}),
        _block_start(2, {"type": "tool_use", "id": "t1", "name": "clock", "input": {}}),
        _delta(2, {"type": "input_json_delta", "partial_json": '{"tz": "U'}),
        ("mystery", {"type": "mystery"}),  # a Notice: tells the test the whole body arrived
    )
    notice = engine.Notice("event", "ignored unknown stream event 'mystery'")
    async with LoopbackServer([Reply(body=body, then="hang")]) as server:
        events = await _cut(AnthropicProvider(client, server.url), server, notice)

    tail = events[-2:]
    assert events[-3] == notice
    assert tail[0] == engine.UsageReported(engine.Usage(input_tokens=21, output_tokens=1))
    assert isinstance(tail[1], engine.PartialMessage)
    partial = tail[1].message
    assert partial.role is engine.Role.ASSISTANT
    assert (partial.text, partial.reasoning) == ("Hello, wor", "hmm")
    assert partial.tool_calls == ()  # cut mid-arguments, never run: left out
    assert partial.incomplete is True
    assert partial.stop_reason is engine.StopReason.CANCELLED
    assert not any(isinstance(e, engine.MessageCompleted) for e in events)


async def test_openai_cut_reports_the_text_and_no_usage_when_none_was_reported(
    client: httpx.AsyncClient,
) -> None:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": t}, "finish_reason": None}]}
        for t in ("Hel", "lo")
    ]
    body = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks)
    async with LoopbackServer([Reply(body=body, then="hang")]) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1")
        events = await _cut(provider, server, engine.TextDelta("lo"))

    assert not any(isinstance(e, engine.UsageReported) for e in events)
    partials = [e for e in events if isinstance(e, engine.PartialMessage)]
    assert [p.message.text for p in partials] == ["Hello"]


async def test_a_cut_before_any_text_reports_no_partial_message(
    client: httpx.AsyncClient,
) -> None:
    async with LoopbackServer([Reply(body=_anthropic(MESSAGE_START), then="hang")]) as server:
        events: list[engine.TurnEvent] = []
        config = engine.TurnConfig(model="m", retry=engine.RetryPolicy(max_attempts=1))
        history = [engine.Message(engine.Role.USER, "hi")]
        provider = AnthropicProvider(client, server.url)
        task = asyncio.create_task(run_turn_quietly(provider, config, history, events))
        await eventually(lambda: bool(server.requests), within=BOUND, what="the request")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    assert not any(isinstance(e, engine.PartialMessage) for e in events)
