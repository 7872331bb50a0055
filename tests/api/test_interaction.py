"""InteractionService through the real server with the real client: single-flight and busy
policies (guarantee 1), idempotency (2) and real cancellation (4) — of the provider's HTTP stream,
of a running tool, of queued runs and of a whole worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

import pytest
from serving import eventually, sse

import engine
from engine import ScriptedProvider
from engine.testing import LoopbackServer, Reply, text_reply, tool_reply
from runtime_client import (
    BusyPolicy,
    Event,
    IdempotencyConflict,
    InputCommitted,
    QueueFull,
    Role,
    RunFinished,
    RunStarted,
    RunState,
    RuntimeClient,
    StatusCode,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    WorkerBusy,
    WorkerState,
    WorkerStopped,
    WorkerStoppedError,
)
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import ServeFactory

LONG = " ".join(f"w{i}" for i in range(200))  # minutes on "very-slow", seconds on "slow"
BOUND = 30.0  # seconds: a safety net only, never a speed assertion


class Gate:
    """Shared by the gated providers of one test: inputs starting with "hold" wait here."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.entered = 0
        self.cancelled = 0


class GatedEcho:
    """Echo, except that an input starting with "hold" first waits for ``gate.open``: a run that
    stays active exactly as long as the test wants, with no timing involved."""

    kind = "gated"

    def __init__(self, gate: Gate) -> None:
        self._gate = gate

    async def stream(self, request: engine.ModelRequest) -> AsyncIterator[engine.StreamEvent]:
        text = next(m.text for m in reversed(request.messages) if m.role is engine.Role.USER)
        if text.startswith("hold"):
            self._gate.entered += 1
            try:
                await self._gate.open.wait()
            except asyncio.CancelledError:
                self._gate.cancelled += 1
                raise
        yield engine.TextDelta(text)
        yield engine.UsageUpdate(engine.Usage(input_tokens=1, output_tokens=1))
        yield engine.StreamStop(engine.StopReason.END_TURN)

    async def aclose(self) -> None:
        return None


async def gated(serve: ServeFactory, **kwargs: Any) -> tuple[RuntimeClient, Gate]:
    gate = Gate()
    served = await serve(provider_factory=lambda _profile: GatedEcho(gate), **kwargs)
    return served.client, gate


async def events_of(client: RuntimeClient, worker_id: str) -> list[Event]:
    return list((await client.list_events(worker_id=worker_id)).events)


def finished(events: list[Event], run_id: str) -> list[RunState]:
    return [
        e.payload.run.state
        for e in events
        if isinstance(e.payload, RunFinished) and e.payload.run.run_id == run_id
    ]


def started_runs(events: list[Event]) -> list[str]:
    return [e.payload.run.run_id for e in events if isinstance(e.payload, RunStarted)]


async def transcript_texts(client: RuntimeClient, worker_id: str) -> list[str]:
    return [e.message.text async for e in client.iter_transcript(worker_id)]


# --- guarantee 1: single-flight -------------------------------------------------------------


async def test_concurrent_send_inputs_start_exactly_one_run(serve: ServeFactory) -> None:
    client, gate = await gated(serve)
    w = (await client.create_worker()).worker

    results = await asyncio.gather(
        *(client.send_input(w.worker_id, f"hold {i}") for i in range(50)),
        return_exceptions=True,
    )

    accepted = [r for r in results if not isinstance(r, BaseException)]
    busy = [r for r in results if isinstance(r, WorkerBusy)]
    assert len(accepted) == 1, results
    assert len(busy) == 49, [r for r in results if not isinstance(r, WorkerBusy)]
    run = accepted[0].run
    assert run.state is RunState.RUNNING
    for err in busy:
        assert err.code is StatusCode.FAILED_PRECONDITION
        assert err.reason == "WORKER_BUSY"
        assert err.active_run_id == run.run_id
        assert err.metadata["worker_id"] == w.worker_id
    assert started_runs(await events_of(client, w.worker_id)) == [run.run_id]
    assert (await client.get_runtime()).active_runs == 1
    assert gate.entered == 1
    assert (await client.get_worker(w.worker_id)).active_run_id == run.run_id

    gate.open.set()
    assert (await client.wait_run(run.run_id, timeout=BOUND)).state is RunState.COMPLETED
    assert len(await transcript_texts(client, w.worker_id)) == 2  # one input, one answer


async def test_enqueue_queues_in_order_up_to_the_bound(serve: ServeFactory) -> None:
    client, gate = await gated(serve, limits=Limits(max_queue_per_worker=2))
    w = (await client.create_worker()).worker
    first = (await client.send_input(w.worker_id, "hold first")).run
    q1 = (await client.send_input(w.worker_id, "q1", busy_policy=BusyPolicy.ENQUEUE)).run
    q2 = (await client.send_input(w.worker_id, "q2", busy_policy=BusyPolicy.ENQUEUE)).run

    with pytest.raises(QueueFull) as info:
        await client.send_input(w.worker_id, "q3", busy_policy=BusyPolicy.ENQUEUE)
    assert info.value.code is StatusCode.RESOURCE_EXHAUSTED
    assert info.value.metadata["limit"] == "2"
    assert (q1.state, q2.state) == (RunState.QUEUED, RunState.QUEUED)
    assert (await client.get_run(q1.run_id)).state is RunState.QUEUED
    assert (await client.get_worker(w.worker_id)).queued_runs == 2
    assert (await client.get_runtime()).queued_runs == 2
    with pytest.raises(WorkerBusy):  # REJECT is still the default
        await client.send_input(w.worker_id, "rejected")

    gate.open.set()
    for run in (first, q1, q2):
        assert (await client.wait_run(run.run_id, timeout=BOUND)).state is RunState.COMPLETED
    events = await events_of(client, w.worker_id)
    assert started_runs(events) == [first.run_id, q1.run_id, q2.run_id]
    # a queued run starts only after the previous one finished: never two at once
    order = [
        (e.payload.run.run_id, type(e.payload).__name__)
        for e in events
        if isinstance(e.payload, (RunStarted, RunFinished))
    ]
    assert order == [
        (first.run_id, "RunStarted"),
        (first.run_id, "RunFinished"),
        (q1.run_id, "RunStarted"),
        (q1.run_id, "RunFinished"),
        (q2.run_id, "RunStarted"),
        (q2.run_id, "RunFinished"),
    ]
    texts = await transcript_texts(client, w.worker_id)
    assert texts == ["hold first", "hold first", "q1", "q1", "q2", "q2"]
    assert (await client.get_worker(w.worker_id)).state is WorkerState.IDLE


async def test_enqueue_on_an_idle_worker_starts_at_once(serve: ServeFactory) -> None:
    client, _gate = await gated(serve)
    w = (await client.create_worker()).worker
    run = (await client.send_input(w.worker_id, "now", busy_policy=BusyPolicy.ENQUEUE)).run
    assert run.state is RunState.RUNNING
    assert (await client.wait_run(run.run_id, timeout=BOUND)).state is RunState.COMPLETED


async def test_interrupt_cancels_the_active_run_and_starts_the_new_one(
    serve: ServeFactory,
) -> None:
    client, gate = await gated(serve)
    w = (await client.create_worker()).worker
    first = (await client.send_input(w.worker_id, "hold on")).run
    queued = (await client.send_input(w.worker_id, "later", busy_policy=BusyPolicy.ENQUEUE)).run

    new = (await client.send_input(w.worker_id, "now", busy_policy=BusyPolicy.INTERRUPT)).run

    done = await client.wait_run(first.run_id, timeout=BOUND)
    assert done.state is RunState.CANCELLED
    assert gate.cancelled == 1
    assert (await client.wait_run(new.run_id, timeout=BOUND)).state is RunState.COMPLETED
    # the interrupting input goes first; what was queued before it still runs afterwards
    assert (await client.wait_run(queued.run_id, timeout=BOUND)).state is RunState.COMPLETED
    events = await events_of(client, w.worker_id)
    assert started_runs(events) == [first.run_id, new.run_id, queued.run_id]
    assert finished(events, first.run_id) == [RunState.CANCELLED]
    texts = await transcript_texts(client, w.worker_id)
    assert texts == ["hold on", "now", "now", "later", "later"]


# --- guarantee 2: idempotency ---------------------------------------------------------------


async def test_create_worker_is_idempotent_by_request_id(client: RuntimeClient) -> None:
    first = await client.create_worker(display_name="a", labels={"k": "v"}, request_id="create-1")
    again = await client.create_worker(display_name="a", labels={"k": "v"}, request_id="create-1")

    assert again.worker.worker_id == first.worker.worker_id
    assert again.seq == first.seq
    assert (await client.list_workers()).total_size == 1

    with pytest.raises(IdempotencyConflict) as info:
        await client.create_worker(display_name="b", labels={"k": "v"}, request_id="create-1")
    assert info.value.code is StatusCode.ALREADY_EXISTS
    assert info.value.reason == "IDEMPOTENCY_KEY_REUSED"
    assert info.value.metadata["request_id"] == "create-1"
    assert (await client.list_workers()).total_size == 1


async def test_concurrent_duplicate_create_workers_make_one_worker(client: RuntimeClient) -> None:
    results = await asyncio.gather(
        *(client.create_worker(profile="slow", request_id="same") for _ in range(20))
    )

    assert len({r.worker.worker_id for r in results}) == 1
    assert len({r.seq for r in results}) == 1
    assert (await client.list_workers()).total_size == 1
    info = await client.get_runtime()
    assert info.workers.total == 1


async def test_create_worker_with_initial_input_is_idempotent(client: RuntimeClient) -> None:
    first = await client.create_worker(initial_input="hi", request_id="with-input")
    again = await client.create_worker(initial_input="hi", request_id="with-input")

    assert first.initial_run is not None
    assert again.initial_run is not None
    assert again.initial_run.run_id == first.initial_run.run_id
    await client.wait_run(first.initial_run.run_id, timeout=BOUND)
    assert await transcript_texts(client, first.worker.worker_id) == ["hi", "hi"]


async def test_send_input_is_idempotent_by_request_id(serve: ServeFactory) -> None:
    client, gate = await gated(serve)
    w = (await client.create_worker()).worker
    first = await client.send_input(w.worker_id, "hold it", request_id="input-1")
    # a repeat while the run is active returns the first answer: no new run, no WorkerBusy
    again = await client.send_input(w.worker_id, "hold it", request_id="input-1")

    assert again.run.run_id == first.run.run_id
    assert again.seq == first.seq
    with pytest.raises(IdempotencyConflict) as info:
        await client.send_input(w.worker_id, "something else", request_id="input-1")
    assert info.value.code is StatusCode.ALREADY_EXISTS
    with pytest.raises(IdempotencyConflict):  # the busy policy is part of the request
        await client.send_input(
            w.worker_id, "hold it", request_id="input-1", busy_policy=BusyPolicy.ENQUEUE
        )

    gate.open.set()
    await client.wait_run(first.run.run_id, timeout=BOUND)
    later = await client.send_input(w.worker_id, "hold it", request_id="input-1")
    assert later.run.run_id == first.run.run_id
    assert later.run.state is RunState.COMPLETED  # the run as it is now
    assert later.seq == first.seq
    events = await events_of(client, w.worker_id)
    assert started_runs(events) == [first.run.run_id]
    assert sum(isinstance(e.payload, InputCommitted) for e in events) == 1
    assert await transcript_texts(client, w.worker_id) == ["hold it", "hold it"]


async def test_concurrent_duplicate_send_inputs_start_one_run(client: RuntimeClient) -> None:
    w = (await client.create_worker(profile="slow")).worker

    results = await asyncio.gather(
        *(client.send_input(w.worker_id, "one two three", request_id="dup") for _ in range(20))
    )

    assert len({r.run.run_id for r in results}) == 1
    assert len({r.seq for r in results}) == 1
    run_id = results[0].run.run_id
    assert (await client.wait_run(run_id, timeout=BOUND)).state is RunState.COMPLETED
    assert started_runs(await events_of(client, w.worker_id)) == [run_id]
    assert await transcript_texts(client, w.worker_id) == ["one two three"] * 2


# --- guarantee 4: cancellation --------------------------------------------------------------


async def _first_text_delta(client: RuntimeClient, worker_id: str, after_seq: int) -> None:
    async with asyncio.timeout(BOUND):
        async for ev in client.subscribe(worker_id, after_seq=after_seq):
            if isinstance(ev.payload, TextDelta):
                return


async def test_cancel_run_mid_stream_ends_it_once_and_the_worker_goes_on(
    client: RuntimeClient,
) -> None:
    w = (await client.create_worker(profile="slow")).worker
    accepted = await client.send_input(w.worker_id, LONG)
    await _first_text_delta(client, w.worker_id, accepted.seq)

    cancelled = await client.cancel_run(accepted.run.run_id)

    assert cancelled.state is RunState.CANCELLED
    assert cancelled.finished_at > 0
    assert cancelled.error is not None
    assert cancelled.error.code == "CANCELLED"
    assert (await client.get_run(accepted.run.run_id)).state is RunState.CANCELLED
    # idempotent: the same answer, and nothing new happens
    seq_before = (await client.get_runtime()).last_seq
    assert (await client.cancel_run(accepted.run.run_id)).state is RunState.CANCELLED
    assert (await client.get_runtime()).last_seq == seq_before
    events = await events_of(client, w.worker_id)
    assert finished(events, accepted.run.run_id) == [RunState.CANCELLED]
    assert (await client.get_worker(w.worker_id)).state is WorkerState.IDLE

    nxt = await client.send_input(w.worker_id, "next please")
    assert (await client.wait_run(nxt.run.run_id, timeout=BOUND)).state is RunState.COMPLETED
    texts = await transcript_texts(client, w.worker_id)
    assert texts[0] == LONG
    assert texts[-2:] == ["next please", "next please"]


async def test_cancel_a_finished_run_returns_it_unchanged(client: RuntimeClient) -> None:
    w = (await client.create_worker()).worker
    run = (await client.send_input(w.worker_id, "quick")).run
    done = await client.wait_run(run.run_id, timeout=BOUND)

    assert (await client.cancel_run(run.run_id)) == done
    assert finished(await events_of(client, w.worker_id), run.run_id) == [RunState.COMPLETED]


async def test_cancel_a_queued_run(serve: ServeFactory) -> None:
    client, gate = await gated(serve)
    w = (await client.create_worker()).worker
    first = (await client.send_input(w.worker_id, "hold")).run
    q1 = (await client.send_input(w.worker_id, "q1", busy_policy=BusyPolicy.ENQUEUE)).run
    q2 = (await client.send_input(w.worker_id, "q2", busy_policy=BusyPolicy.ENQUEUE)).run

    cancelled = await client.cancel_run(q1.run_id)

    assert cancelled.state is RunState.CANCELLED
    assert (await client.cancel_run(q1.run_id)).state is RunState.CANCELLED
    assert (await client.get_worker(w.worker_id)).queued_runs == 1
    assert (await client.get_run(first.run_id)).state is RunState.RUNNING  # untouched
    gate.open.set()
    assert (await client.wait_run(q2.run_id, timeout=BOUND)).state is RunState.COMPLETED
    events = await events_of(client, w.worker_id)
    assert started_runs(events) == [first.run_id, q2.run_id]  # q1 never started
    assert finished(events, q1.run_id) == [RunState.CANCELLED]
    assert await transcript_texts(client, w.worker_id) == ["hold", "hold", "q2", "q2"]


async def test_stop_worker_cancels_active_drops_queued_and_is_idempotent(
    serve: ServeFactory,
) -> None:
    client, gate = await gated(serve)
    w = (await client.create_worker()).worker
    active = (await client.send_input(w.worker_id, "hold")).run
    queued = [
        (await client.send_input(w.worker_id, f"q{i}", busy_policy=BusyPolicy.ENQUEUE)).run
        for i in range(3)
    ]

    stopped = await client.stop_worker(w.worker_id)

    assert stopped.state is WorkerState.STOPPED
    assert stopped.active_run_id == ""
    assert stopped.queued_runs == 0
    assert gate.cancelled == 1
    events = await events_of(client, w.worker_id)
    for run in (active, *queued):
        assert (await client.get_run(run.run_id)).state is RunState.CANCELLED
        assert finished(events, run.run_id) == [RunState.CANCELLED]
    assert started_runs(events) == [active.run_id]

    again = await client.stop_worker(w.worker_id)
    assert again.state is WorkerState.STOPPED
    events = await events_of(client, w.worker_id)
    assert sum(isinstance(e.payload, WorkerStopped) for e in events) == 1
    with pytest.raises(WorkerStoppedError) as info:
        await client.send_input(w.worker_id, "hello?")
    assert info.value.code is StatusCode.FAILED_PRECONDITION
    with pytest.raises(WorkerStoppedError):
        await client.send_input(w.worker_id, "hello?", busy_policy=BusyPolicy.ENQUEUE)
    info_ = await client.get_runtime()
    assert (info_.active_runs, info_.queued_runs, info_.workers.stopped) == (0, 0, 1)


async def test_concurrent_stop_workers_stop_once(serve: ServeFactory) -> None:
    client, _gate = await gated(serve)
    w = (await client.create_worker()).worker
    run = (await client.send_input(w.worker_id, "hold")).run

    results = await asyncio.gather(*(client.stop_worker(w.worker_id) for _ in range(10)))

    assert [r.state for r in results] == [WorkerState.STOPPED] * 10
    events = await events_of(client, w.worker_id)
    assert sum(isinstance(e.payload, WorkerStopped) for e in events) == 1
    assert finished(events, run.run_id) == [RunState.CANCELLED]


def _chunk(content: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


async def test_cancel_closes_the_provider_http_stream(serve: ServeFactory) -> None:
    # The first chunk arrives, then the server goes silent and waits for the client to leave.
    reply = Reply(body=sse(_chunk("Hel"), _chunk("lo")), then="hang")
    async with LoopbackServer([reply]) as provider_server:
        config = {
            "providers": {"loop": {"kind": "openai_chat", "base_url": provider_server.url + "/v1"}},
            "profiles": {"remote": {"provider": "loop", "model": "test-model"}},
        }
        served = await serve(config=config)
        client = served.client
        w = (await client.create_worker(profile="remote")).worker
        accepted = await client.send_input(w.worker_id, "say hello")
        await _first_text_delta(client, w.worker_id, accepted.seq)
        assert provider_server.disconnects == 0

        cancelled = await client.cancel_run(accepted.run.run_id)

        assert cancelled.state is RunState.CANCELLED
        await asyncio.wait_for(provider_server.disconnected.wait(), BOUND)
        assert provider_server.disconnects == 1
        assert len(provider_server.requests) == 1  # no retry after a cancel
        assert provider_server.requests[0].path == "/v1/chat/completions"
        events = await events_of(client, w.worker_id)
        assert finished(events, accepted.run.run_id) == [RunState.CANCELLED]
        await eventually(lambda: served.runtime.info().active_runs == 0)


async def test_cancel_while_a_tool_runs_cancels_it_and_closes_the_call(serve: ServeFactory) -> None:
    tool_started = asyncio.Event()
    tool_cancelled = asyncio.Event()

    async def slow_tool(args: Mapping[str, Any]) -> str:
        tool_started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            tool_cancelled.set()
            raise
        return "never"

    provider = ScriptedProvider(
        [tool_reply(("call-1", "slow_tool", '{"n": 1}')), text_reply("all good")]
    )
    registry = engine.ToolRegistry([engine.Tool("slow_tool", "Takes forever.", slow_tool)])
    served = await serve(
        provider_factory=lambda _profile: provider, tools_factory=lambda _p, _w: registry
    )
    client = served.client
    w = (await client.create_worker()).worker
    accepted = await client.send_input(w.worker_id, "use the tool")
    await asyncio.wait_for(tool_started.wait(), BOUND)

    cancelled = await client.cancel_run(accepted.run.run_id)

    assert cancelled.state is RunState.CANCELLED
    assert tool_cancelled.is_set()
    transcript = [e.message async for e in client.iter_transcript(w.worker_id)]
    assert [m.role for m in transcript] == [Role.USER, Role.ASSISTANT, Role.TOOL]
    assert [c.call_id for c in transcript[1].tool_calls] == ["call-1"]
    closing = transcript[2]
    assert closing.tool_call_id == "call-1"
    assert closing.tool_name == "slow_tool"
    assert closing.is_error is True
    assert closing.text == engine.CANCELLED_RESULT
    events = await events_of(client, w.worker_id)
    starts = [e.payload for e in events if isinstance(e.payload, ToolCallStarted)]
    ends = [e.payload for e in events if isinstance(e.payload, ToolCallFinished)]
    assert [(s.call_id, s.tool_name, s.arguments) for s in starts] == [
        ("call-1", "slow_tool", '{"n": 1}')
    ]
    assert [(f.call_id, f.is_error, f.result) for f in ends] == [
        ("call-1", True, engine.CANCELLED_RESULT)
    ]
    assert finished(events, accepted.run.run_id) == [RunState.CANCELLED]

    # the history is valid for the next turn: every tool call has its result
    nxt = await client.send_input(w.worker_id, "and now?")
    assert (await client.wait_run(nxt.run.run_id, timeout=BOUND)).state is RunState.COMPLETED
    sent = provider.requests[-1].messages
    assert [m.role for m in sent] == [
        engine.Role.USER,
        engine.Role.ASSISTANT,
        engine.Role.TOOL,
        engine.Role.USER,
    ]
    assert sent[2].tool_call_id == "call-1"
    assert (await transcript_texts(client, w.worker_id))[-1] == "all good"
    await eventually(lambda: provider.closed == provider.opened)
