"""The turn loop against the scripted provider: tools, limits, continuation, retries."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from typing import Any

import pytest

from engine import (
    CANCELLED_RESULT,
    Message,
    MessageCompleted,
    Notice,
    PartialDiscarded,
    Pause,
    ProviderConnectionError,
    ProviderHTTPError,
    RetryPolicy,
    Role,
    ScriptedProvider,
    StopReason,
    TextDelta,
    Tool,
    ToolCallFinished,
    ToolCallStarted,
    ToolRegistry,
    TurnConfig,
    TurnEvent,
    Usage,
    run_turn,
)
from engine.testing import text_reply, tool_reply

FAST_RETRY = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01)
HISTORY = (Message(Role.USER, "go"),)


def config(**overrides: Any) -> TurnConfig:
    return TurnConfig(model="m", **{"retry": FAST_RETRY, **overrides})


class Recorder:
    def __init__(self) -> None:
        self.events: list[TurnEvent] = []

    def __call__(self, event: TurnEvent) -> None:
        self.events.append(event)

    def of(self, kind: type) -> list[Any]:
        return [e for e in self.events if isinstance(e, kind)]


def tool(name: str, fn: Any) -> Tool:
    return Tool(name, f"the {name} tool", fn)


async def echo_args(args: Mapping[str, Any]) -> str:
    return json.dumps(dict(args), sort_keys=True)


async def test_text_turn_commits_one_message_and_reports_usage() -> None:
    provider = ScriptedProvider([text_reply("hello")])
    rec = Recorder()
    result = await run_turn(provider, config(), HISTORY, emit=rec)
    assert result.stop_reason is StopReason.END_TURN
    assert [m.text for m in result.messages] == ["hello"]
    assert result.usage == Usage(1, 1)
    assert rec.of(TextDelta) == [TextDelta("hello")]
    assert [e.message for e in rec.of(MessageCompleted)] == list(result.messages)
    assert provider.opened == provider.closed == 1


async def test_parallel_tools_run_concurrently_and_results_keep_call_order() -> None:
    both_running = asyncio.Barrier(2)

    async def slow(args: Mapping[str, Any]) -> str:
        # Only passes if the other call is running at the same time.
        await asyncio.wait_for(both_running.wait(), 5)
        return f"slow {args['n']}"

    async def fast(args: Mapping[str, Any]) -> str:
        await asyncio.wait_for(both_running.wait(), 5)
        return f"fast {args['n']}"

    provider = ScriptedProvider(
        [tool_reply(("c1", "slow", '{"n": 1}'), ("c2", "fast", '{"n": 2}')), text_reply("done")]
    )
    rec = Recorder()
    registry = ToolRegistry([tool("slow", slow), tool("fast", fast)])
    result = await run_turn(provider, config(), HISTORY, emit=rec, tools=registry)
    assert result.stop_reason is StopReason.END_TURN
    roles = [m.role for m in result.messages]
    assert roles == [Role.ASSISTANT, Role.TOOL, Role.TOOL, Role.ASSISTANT]
    assert [(m.tool_call_id, m.text) for m in result.messages[1:3]] == [
        ("c1", "slow 1"),
        ("c2", "fast 2"),
    ]
    assert [e.call_id for e in rec.of(ToolCallStarted)] == ["c1", "c2"]
    # the second request carried the calls and their results
    second = provider.requests[1].messages
    assert second[-2].tool_call_id == "c1"
    assert second[-1].tool_call_id == "c2"
    assert {s.name for s in provider.requests[0].tools} == {"slow", "fast"}


@pytest.mark.parametrize(
    ("name", "arguments", "expected"),
    [
        ("nope", "{}", "unknown tool 'nope'"),
        ("echo", '{"a": ', "not valid JSON"),
        ("echo", "[1, 2]", "must be a JSON object"),
        ("boom", "{}", "RuntimeError: kaput"),
    ],
)
async def test_bad_calls_become_error_results_the_model_sees(
    name: str, arguments: str, expected: str
) -> None:
    async def boom(args: Mapping[str, Any]) -> str:
        raise RuntimeError("kaput")

    provider = ScriptedProvider([tool_reply(("c1", name, arguments)), text_reply("sorry")])
    rec = Recorder()
    registry = ToolRegistry([tool("echo", echo_args), tool("boom", boom)])
    result = await run_turn(provider, config(), HISTORY, emit=rec, tools=registry)
    tool_msg = result.messages[1]
    assert tool_msg.role is Role.TOOL
    assert tool_msg.is_error
    assert expected in tool_msg.text
    assert rec.of(ToolCallFinished)[0].is_error
    assert provider.requests[1].messages[-1] == tool_msg  # the model saw it
    assert result.stop_reason is StopReason.END_TURN


async def test_tool_timeout_cancels_the_tool() -> None:
    cancelled = asyncio.Event()

    async def hang(args: Mapping[str, Any]) -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "never"

    provider = ScriptedProvider([tool_reply(("c1", "hang", "{}")), text_reply("ok")])
    registry = ToolRegistry([tool("hang", hang)])
    result = await run_turn(
        provider, config(tool_timeout_s=0.05), HISTORY, emit=Recorder(), tools=registry
    )
    assert "timed out" in result.messages[1].text
    assert result.messages[1].is_error
    assert cancelled.is_set()


async def test_tool_output_is_capped() -> None:
    async def big(args: Mapping[str, Any]) -> str:
        return "x" * 1000

    provider = ScriptedProvider([tool_reply(("c1", "big", "{}")), text_reply("ok")])
    registry = ToolRegistry([tool("big", big)])
    result = await run_turn(
        provider, config(tool_output_max_chars=100), HISTORY, emit=Recorder(), tools=registry
    )
    text = result.messages[1].text
    assert text.startswith("x" * 100)
    assert "x" * 101 not in text
    assert "truncated: 900 more characters" in text
    assert not result.messages[1].is_error


async def test_tool_round_limit_ends_with_limit_reached_and_a_valid_history() -> None:
    provider = ScriptedProvider([tool_reply((f"c{i}", "echo", "{}")) for i in range(3)])
    registry = ToolRegistry([tool("echo", echo_args)])
    result = await run_turn(
        provider, config(max_tool_rounds=2), HISTORY, emit=Recorder(), tools=registry
    )
    assert result.stop_reason is StopReason.LIMIT_REACHED
    assert len(provider.requests) == 3
    last = result.messages[-1]
    assert last.role is Role.TOOL
    assert last.tool_call_id == "c2"
    assert last.is_error
    assert "limit" in last.text
    assert_history_valid(list(HISTORY) + list(result.messages))


async def test_length_continuation_asks_again_with_the_partial_message() -> None:
    provider = ScriptedProvider(
        [text_reply("part one", StopReason.LENGTH), text_reply(" part two")]
    )
    result = await run_turn(provider, config(max_length_continuations=1), HISTORY, emit=Recorder())
    assert result.stop_reason is StopReason.END_TURN
    assert [m.text for m in result.messages] == ["part one", " part two"]
    assert provider.requests[1].messages[-1].text == "part one"
    assert result.usage == Usage(2, 2)


async def test_no_continuation_by_default() -> None:
    provider = ScriptedProvider([text_reply("cut", StopReason.LENGTH)])
    result = await run_turn(provider, config(), HISTORY, emit=Recorder())
    assert result.stop_reason is StopReason.LENGTH
    assert len(provider.requests) == 1


async def test_failure_before_the_first_event_is_retried_silently() -> None:
    provider = ScriptedProvider(
        [
            [ProviderConnectionError("refused")],
            [ProviderHTTPError("busy", status=503, retryable=True)],
            text_reply("ok"),
        ]
    )
    rec = Recorder()
    result = await run_turn(provider, config(), HISTORY, emit=rec)
    assert result.messages[0].text == "ok"
    assert rec.of(PartialDiscarded) == []
    assert [n.code for n in rec.of(Notice)] == ["provider_retry", "provider_retry"]
    assert provider.opened == provider.closed == 3


async def test_mid_stream_failure_discards_the_partial_message_and_retries() -> None:
    provider = ScriptedProvider(
        [[TextDelta("hel"), ProviderConnectionError("reset")], text_reply("hello")]
    )
    rec = Recorder()
    result = await run_turn(provider, config(), HISTORY, emit=rec)
    assert [m.text for m in result.messages] == ["hello"]  # not "helhello"
    kinds = [type(e).__name__ for e in rec.events if not isinstance(e, Notice)]
    assert kinds[:3] == ["TextDelta", "PartialDiscarded", "TextDelta"]


async def test_non_retryable_errors_and_exhausted_retries_propagate() -> None:
    provider = ScriptedProvider([[ProviderHTTPError("bad request", status=400)]])
    with pytest.raises(ProviderHTTPError):
        await run_turn(provider, config(), HISTORY, emit=Recorder())
    assert provider.opened == 1
    provider = ScriptedProvider([[ProviderConnectionError("down")]] * 3)
    with pytest.raises(ProviderConnectionError):
        await run_turn(
            provider,
            config(retry=RetryPolicy(max_attempts=3, initial_backoff_s=0)),
            HISTORY,
            emit=Recorder(),
        )
    assert provider.opened == 3


async def test_cancel_during_tools_closes_every_call_and_propagates() -> None:
    fast_done = asyncio.Event()
    slow_started = asyncio.Event()
    slow_cancelled = asyncio.Event()

    async def fast(args: Mapping[str, Any]) -> str:
        fast_done.set()
        return "fast result"

    async def slow(args: Mapping[str, Any]) -> str:
        slow_started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            slow_cancelled.set()
            raise
        return "never"

    provider = ScriptedProvider([tool_reply(("c1", "fast", "{}"), ("c2", "slow", "{}"))])
    rec = Recorder()
    registry = ToolRegistry([tool("fast", fast), tool("slow", slow)])
    task = asyncio.create_task(run_turn(provider, config(), HISTORY, emit=rec, tools=registry))
    await asyncio.wait_for(asyncio.gather(fast_done.wait(), slow_started.wait()), 5)
    await asyncio.sleep(0)  # let the fast task finish
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert slow_cancelled.is_set()
    committed = [e.message for e in rec.of(MessageCompleted)]
    results = {m.tool_call_id: m for m in committed if m.role is Role.TOOL}
    assert results["c1"].text == "fast result"
    assert not results["c1"].is_error
    assert results["c2"].text == CANCELLED_RESULT
    assert results["c2"].is_error
    assert_history_valid(list(HISTORY) + committed)


async def test_cancel_mid_stream_closes_the_stream_and_commits_nothing() -> None:
    provider = ScriptedProvider([[TextDelta("a"), Pause(60), TextDelta("b")]])
    rec = Recorder()
    streaming = asyncio.Event()

    def emit(event: TurnEvent) -> None:
        rec(event)
        streaming.set()

    task = asyncio.create_task(run_turn(provider, config(), HISTORY, emit=emit))
    await asyncio.wait_for(streaming.wait(), 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, 5)
    assert provider.closed == 1
    assert rec.of(MessageCompleted) == []


def assert_history_valid(history: list[Message]) -> None:
    """Every tool call has exactly one result, right after its assistant message."""
    pending: list[str] = []
    for message in history:
        if message.role is Role.TOOL:
            assert message.tool_call_id in pending, f"result without call: {message}"
            pending.remove(message.tool_call_id)
            continue
        assert not pending, f"calls without results: {pending}"
        pending = [c.call_id for c in message.tool_calls]
    assert not pending, f"calls without results: {pending}"
