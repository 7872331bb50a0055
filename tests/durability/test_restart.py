"""Restart recovery in-process (a Runtime over a SqliteStore, closed and reopened, or opened on a
state a crash left behind) and through the real CLI (``kill -9`` of ``serve``, in both durability
modes)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from serving import ServeProcessFactory, all_events, eventually, write_config

import engine
from runtime_client import BusyPolicy as ClientBusyPolicy
from runtime_client import Diagnostic as ClientDiagnostic
from runtime_client import RunFinished as ClientRunFinished
from runtime_client import RunState as ClientRunState
from runtime_client import TextDelta as ClientTextDelta
from runtime_client import WorkerState as ClientWorkerState
from runtime_server import errors
from runtime_server.model import (
    BusyPolicy,
    Diagnostic,
    Event,
    InputCommitted,
    MessageCommitted,
    Run,
    RunFinished,
    RunStarted,
    RunState,
    TextDelta,
    ToolCallFinished,
    TranscriptEntry,
    Worker,
    WorkerState,
)
from runtime_server.runtime import Runtime, parse_config
from runtime_server.store import AppendTranscript, PutRequestKey, PutRun, PutWorker, SqliteStore

# Run ids of hand-written store states: canonical UUIDs, as the Runtime mints them (every RPC
# refuses any other spelling)
R0, R1, R2 = (f"01900000-0000-7000-8000-0000000001{i:02}" for i in range(3))
CONFIG = parse_config(
    {
        "profiles": {
            "slow": {"provider": "builtin", "options": {"delay_ms": 5}},
            "very-slow": {"provider": "builtin", "options": {"delay_ms": 500}},
        },
        "limits": {"idempotency_keys_create": 10},
    }
)


def runtime_on(path: Path) -> Runtime:
    return Runtime(store=SqliteStore(path, retention_interval=0.0), config=CONFIG)


async def finished(rt: Runtime, run_id: str) -> Run:
    return await rt.wait_run(run_id, timeout=20.0)


async def events_after(rt: Runtime, after_seq: int) -> list[Event]:
    out: list[Event] = []
    while True:
        page = await rt.list_events(after_seq=after_seq)
        out += page.events
        if not page.events:
            return out
        after_seq = page.events[-1].seq


# --- in-process ------------------------------------------------------------------------------


async def test_clean_restart_keeps_workers_transcripts_runs_usage_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    async with runtime_on(path) as rt:
        w1 = (await rt.create_worker(profile="slow", request_id="c1", labels={"k": "v"})).worker
        c2 = await rt.create_worker(request_id="c2", initial_input="hello there")
        assert c2.initial_run is not None
        a1 = await rt.send_input(w1.worker_id, "one two three", request_id="s1")
        await finished(rt, a1.run.run_id)
        await finished(rt, c2.initial_run.run_id)
        # a deleted worker (its run cancelled, so it has no usage) must stay deleted, keys and all
        w3 = (await rt.create_worker(profile="very-slow")).worker
        a3 = await rt.send_input(w3.worker_id, "gone soon", request_id="s3")
        await rt.delete_worker(w3.worker_id)
        before = rt.info()
        workers = (await rt.list_workers()).items
        transcripts = {w.worker_id: (await rt.get_transcript(w.worker_id)).items for w in workers}
        runs = {r: await rt.get_run(r) for r in (a1.run.run_id, c2.initial_run.run_id)}
        usage = {w.worker_id: await rt.get_usage(w.worker_id) for w in workers}
        total = await rt.get_usage()
    assert total.usage.output_tokens > 0

    async with runtime_on(path) as rt:
        info = rt.info()
        assert info.runtime_id == before.runtime_id
        assert info.store_kind == "sqlite"
        assert (await rt.list_workers()).items == workers
        assert {
            w.worker_id: (await rt.get_transcript(w.worker_id)).items for w in workers
        } == transcripts
        assert {r: await rt.get_run(r) for r in runs} == runs
        assert {w.worker_id: await rt.get_usage(w.worker_id) for w in workers} == usage
        assert await rt.get_usage() == total
        # the seq continues right after the last one, with the recovery diagnostic
        new = await events_after(rt, before.last_seq)
        assert [e.seq for e in new] == [before.last_seq + 1]
        assert isinstance(new[0].payload, Diagnostic)
        assert new[0].payload.code == "RECOVERED"
        assert "0 runs marked INTERRUPTED" in new[0].payload.message
        # idempotency keys survive
        again = await rt.send_input(w1.worker_id, "one two three", request_id="s1")
        assert (again.run, again.seq) == (runs[a1.run.run_id], a1.seq)
        with pytest.raises(errors.IdempotencyConflict):
            await rt.send_input(w1.worker_id, "something else", request_id="s1")
        same = await rt.create_worker(profile="slow", request_id="c1", labels={"k": "v"})
        assert same.worker.worker_id == w1.worker_id
        same2 = await rt.create_worker(request_id="c2", initial_input="hello there")
        assert same2.initial_run == runs[c2.initial_run.run_id]
        # the deleted worker and its run did not come back
        with pytest.raises(errors.WorkerNotFound):
            await rt.get_worker(w3.worker_id)
        with pytest.raises(errors.RunNotFound):
            await rt.get_run(a3.run.run_id)
        # and the workers take new input
        a = await rt.send_input(w1.worker_id, "after the restart")
        assert (await finished(rt, a.run.run_id)).state is RunState.COMPLETED
        assert a.seq > before.last_seq + 1


async def write_crashed_state(path: Path) -> str:
    """What a crash mid-run leaves on disk, written straight through the store: a RUNNING worker,
    its active run (half-way through a tool round: c1 answered, c2 not) and a queued run."""
    store = SqliteStore(path)
    await store.open("rt-crashed")
    usage = engine.Usage(input_tokens=7, output_tokens=3)
    wid = "01900000-0000-7000-8000-000000000001"
    w = Worker(wid, "rt-crashed", WorkerState.RUNNING, "echo", active_run_id=R1, usage=usage)
    r0 = Run(R0, wid, RunState.COMPLETED, 2.0, "first", 2.0, 3.0, usage)
    r1 = Run(R1, wid, RunState.RUNNING, 4.0, "second", 4.0)
    r2 = Run(R2, wid, RunState.QUEUED, 5.0, "third")
    calls = (engine.ToolCall("c1", "clock", "{}"), engine.ToolCall("c2", "clock", "{}"))
    messages = [
        (R0, engine.Message(engine.Role.USER, "first")),
        (R0, engine.Message(engine.Role.ASSISTANT, "first")),
        (R1, engine.Message(engine.Role.USER, "second")),
        (R1, engine.Message(engine.Role.ASSISTANT, tool_calls=calls)),
        (R1, engine.Message(engine.Role.TOOL, "12:00", tool_call_id="c1", tool_name="clock")),
    ]
    entries = [TranscriptEntry(wid, i, r, 4.0, m) for i, (r, m) in enumerate(messages)]
    store.write(
        [Event(1, 1.0, wid, R1, RunStarted(r1)), Event(2, 2.0, wid, R1, TextDelta("x"))],
        [
            PutWorker(w),
            PutRun(r0),
            PutRun(r1),
            PutRun(r2),
            *(AppendTranscript(e) for e in entries),
            # more create keys than the limit (10), oldest first; their workers are long gone
            *(PutRequestKey("create", f"key-{i}", "fp", f"gone-{i}", 1) for i in range(30)),
        ],
    )
    await store.close()
    return wid


async def test_recovery_of_a_crashed_state(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    wid = await write_crashed_state(path)
    async with runtime_on(path) as rt:
        assert rt.runtime_id == "rt-crashed"
        worker = await rt.get_worker(wid)
        assert (worker.state, worker.active_run_id) == (WorkerState.IDLE, "")
        assert worker.usage == engine.Usage(input_tokens=7, output_tokens=3)
        assert (await rt.get_run(R0)).state is RunState.COMPLETED
        for run_id in (R1, R2):
            run = await rt.get_run(run_id)
            assert run.state is RunState.INTERRUPTED
            assert run.error is not None
            assert run.error.code == "INTERRUPTED"
            assert run.finished_at > 0

        # The recovery is in the log right after the last seq, and already committed.
        assert rt.info().last_seq > 2
        new = await events_after(rt, 2)
        assert [e.seq for e in new] == list(range(3, 3 + len(new)))
        ends = Counter(e.payload.run.run_id for e in new if isinstance(e.payload, RunFinished))
        assert ends == {R1: 1, R2: 1}
        closing = [
            (e.payload.call_id, e.payload.is_error, e.run_id)
            for e in new
            if isinstance(e.payload, ToolCallFinished)
        ]
        assert closing == [("c2", True, R1)]
        assert isinstance(new[-1].payload, Diagnostic)
        assert new[-1].payload.code == "RECOVERED"
        assert "2 runs marked INTERRUPTED" in new[-1].payload.message
        assert "after seq 2" in new[-1].payload.message
        assert any(d.code == "RECOVERED" for d in (await rt.list_diagnostics()).items)

        # The dangling tool call got a result, so the transcript is a valid history again.
        transcript = (await rt.get_transcript(wid)).items
        tail = transcript[-1]
        assert (tail.index, tail.run_id) == (5, R1)
        assert tail.message.role is engine.Role.TOOL
        assert (tail.message.tool_call_id, tail.message.is_error) == ("c2", True)

        # Only the newest create keys are kept (the limit is 10): an old one is free again.
        assert (await rt.create_worker(request_id="key-0")).worker.worker_id
        with pytest.raises(errors.RuntimeServiceError):
            await rt.create_worker(request_id="key-29")

        # New input works.
        accepted = await rt.send_input(wid, "fourth input", busy_policy=BusyPolicy.REJECT)
        assert (await finished(rt, accepted.run.run_id)).state is RunState.COMPLETED
        assert (await rt.get_transcript(wid)).items[-1].message.text == "fourth input"

    # A second start finds nothing more to interrupt and adds no second RunFinished.
    async with runtime_on(path) as rt:
        log = await events_after(rt, 0)
        ends = Counter(e.payload.run.run_id for e in log if isinstance(e.payload, RunFinished))
        assert (ends[R1], ends[R2]) == (1, 1)
        last = log[-1].payload
        assert isinstance(last, Diagnostic)
        assert last.code == "RECOVERED"
        assert "0 runs marked INTERRUPTED" in last.message
        assert (await rt.get_worker(wid)).state is WorkerState.IDLE


async def test_queued_run_starts_under_its_own_run_id(tmp_path: Path) -> None:
    """When a queued input starts, its RunStarted and InputCommitted name that run (they used to be
    sent under the id of the run that had just finished)."""
    async with runtime_on(tmp_path / "runtime.sqlite3") as rt:
        w = (await rt.create_worker(profile="slow")).worker
        first = await rt.send_input(w.worker_id, "a b c")
        second = await rt.send_input(w.worker_id, "d e f", busy_policy=BusyPolicy.ENQUEUE)
        await finished(rt, second.run.run_id)
        log = await events_after(rt, first.seq - 1)
        for event in log:
            payload = event.payload
            if isinstance(payload, RunStarted | RunFinished):
                assert event.run_id == payload.run.run_id
            if isinstance(payload, InputCommitted | MessageCommitted):
                assert event.run_id == payload.entry.run_id


# --- through the CLI -------------------------------------------------------------------------


@pytest.mark.parametrize("durability", ["process", "power"])
async def test_kill9_restart_through_cli(
    serve_process: ServeProcessFactory, tmp_path: Path, durability: str
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "cfg.toml", delay_ms=200, event_retention_events=5000)
    sp = await serve_process(data, config=config, durability=durability)
    assert f"durability {durability}" in sp.banner
    client = sp.client()
    info = await client.get_runtime()
    assert info.store_kind == "sqlite"
    assert info.limits.event_retention_events == 5000
    done = await client.create_worker(request_id="done", initial_input="short")
    assert done.initial_run is not None
    await client.wait_run(done.initial_run.run_id, timeout=30)
    w = (await client.create_worker(profile="slow", request_id="w")).worker.worker_id
    active = await client.send_input(w, "a b c d e f g h i j k l", request_id="active")
    queued = await client.send_input(
        w, "queued input", request_id="queued", busy_policy=ClientBusyPolicy.ENQUEUE
    )

    async def streaming() -> bool:
        page = await client.list_events(after_seq=active.seq, worker_id=w)
        return any(isinstance(e.payload, ClientTextDelta) for e in page.events)

    await eventually(streaming, what="the run streaming")
    usage = await client.get_usage(done.worker.worker_id)
    head = (await client.get_runtime()).last_seq
    sp.kill9()

    sp = await serve_process(data, config=config, durability=durability)
    client = sp.client()
    info = await client.get_runtime()
    assert info.runtime_id == done.worker.runtime_id
    assert info.last_seq > head
    assert (info.workers.idle, info.workers.total) == (2, 2)
    assert (await client.get_worker(w)).state is ClientWorkerState.IDLE
    for acc in (active, queued):
        run = await client.get_run(acc.run.run_id)
        assert run.state is ClientRunState.INTERRUPTED
    assert (await client.get_run(done.initial_run.run_id)).state is ClientRunState.COMPLETED
    assert await client.get_usage(done.worker.worker_id) == usage
    transcript = [e.message.text async for e in client.iter_transcript(w)]
    assert transcript == ["a b c d e f g h i j k l"]  # acknowledged, started, then interrupted

    # After the last seq seen before the crash: contiguous, one RunFinished per run, RECOVERED.
    new = await all_events(client, head)
    assert [e.seq for e in new] == list(range(head + 1, head + 1 + len(new)))
    logged = await all_events(client)
    ends = Counter(e.run_id for e in logged if isinstance(e.payload, ClientRunFinished))
    assert ends[active.run.run_id] == ends[queued.run.run_id] == 1
    assert any(
        isinstance(e.payload, ClientDiagnostic) and e.payload.code == "RECOVERED" for e in new
    )

    # Idempotency keys survived: the same request returns the first run and seq.
    again = await client.send_input(w, "a b c d e f g h i j k l", request_id="active")
    assert (again.run.run_id, again.seq) == (active.run.run_id, active.seq)
    assert again.run.state is ClientRunState.INTERRUPTED
    same = await client.create_worker(profile="slow", request_id="w")
    assert same.worker.worker_id == w

    # New input works.
    fresh = await client.send_input(w, "back again")
    assert (await client.wait_run(fresh.run.run_id, timeout=30)).state is ClientRunState.COMPLETED
    assert sp.terminate() == 0


async def test_usage_spent_before_a_crash_is_kept(tmp_path: Path) -> None:
    """A run's usage is saved with each UsageReported; after a crash, recovery adds the usage of
    the interrupted run to its worker (and to the runtime's total)."""
    path = tmp_path / "runtime.sqlite3"
    store = SqliteStore(path)
    await store.open("rt-usage")
    wid = "01900000-0000-7000-8000-0000000000aa"
    before = engine.Usage(input_tokens=10, output_tokens=4)
    spent = engine.Usage(input_tokens=5, output_tokens=2, cache_read_tokens=1)
    worker = Worker(wid, "rt-usage", WorkerState.RUNNING, "echo", active_run_id=R1, usage=before)
    run = Run(R1, wid, RunState.RUNNING, 1.0, "hi", 1.0, usage=spent)
    store.write([Event(1, 1.0, wid, R1, RunStarted(run))], [PutWorker(worker), PutRun(run)])
    await store.close()

    async with runtime_on(path) as rt:
        assert (await rt.get_run(R1)).state is RunState.INTERRUPTED
        assert (await rt.get_run(R1)).usage == spent
        assert (await rt.get_worker(wid)).usage == before + spent
        assert (await rt.get_usage()).usage == before + spent
    async with runtime_on(path) as rt:  # counted once, not again on the next start
        assert (await rt.get_worker(wid)).usage == before + spent


async def test_run_usage_is_saved_as_it_is_reported(tmp_path: Path) -> None:
    """Mid-run (a tool round in progress), GetRun shows the usage of the model request that
    finished, and the run keeps it across a restart."""
    release = asyncio.Event()
    started = asyncio.Event()

    async def wait_tool(args: Mapping[str, Any]) -> str:
        started.set()
        await release.wait()
        return "done"

    first = engine.Usage(input_tokens=11, output_tokens=6)
    provider = engine.ScriptedProvider(
        [
            [
                engine.ToolCallStart(0, "c1", "wait_tool"),
                engine.ToolCallArgsDelta(0, "{}"),
                engine.ToolCallEnd(0),
                engine.UsageUpdate(first),
                engine.StreamStop(engine.StopReason.TOOL_USE),
            ],
            [engine.TextDelta("ok"), engine.StreamStop(engine.StopReason.END_TURN)],
        ]
    )
    tools = engine.ToolRegistry([engine.Tool("wait_tool", "Waits.", wait_tool)])
    path = tmp_path / "runtime.sqlite3"
    rt = Runtime(
        store=SqliteStore(path, retention_interval=0.0),
        config=CONFIG,
        provider_factory=lambda _p: provider,
        tools_factory=lambda _p, _w: tools,
    )
    await rt.start()
    try:
        wid = (await rt.create_worker()).worker.worker_id
        accepted = await rt.send_input(wid, "use the tool")
        await asyncio.wait_for(started.wait(), 30)
        assert (await rt.get_run(accepted.run.run_id)).usage == first
        assert (await rt.get_usage(wid)).usage == first
    finally:
        release.set()
        await rt.close()
    async with runtime_on(path) as again:
        run = await again.get_run(accepted.run.run_id)
        assert run.usage == first
        assert (await again.get_worker(wid)).usage == first
