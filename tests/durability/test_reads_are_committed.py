"""Every read answers only what is committed (runtime._settle).

The Runtime changes a worker in memory when it appends the batch and the store commits it a moment
later (on SQLite, from the writer thread). GetWorker, ListWorkers, GetUsage, GetRuntime and
GetTranscript answered from memory at once: a client could see a worker IDLE with its usage, a
transcript entry, a worker created or deleted, before the store held it — and after a ``kill -9``
in that moment the store comes back without it (the run INTERRUPTED, the worker back or gone).
GetRun had been fixed the same way (test_finished_run_is_committed); these are the other reads.

The commit reports of a real SQLite store are held back (held_reports), so the moment stays open
for as long as the test needs: a read must not answer while held, and must answer with the new
state once released. Held reports are taken before the change starts, never raced with it.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from held_reports import HeldReports
from serving import eventually

from runtime_server import errors
from runtime_server.model import RunFinished, WorkerState
from runtime_server.runtime import Runtime, parse_config

BOUND = 30.0  # a safety net on a shared machine, not a speed assertion
HELD = 0.2  # how long a read is given to (wrongly) answer while the commit is held


def _ended(rt: Runtime) -> bool:
    """The run has ended in memory (its usage is in the totals; it was idle before it began)."""
    info = rt.info()
    return info.active_runs == 0 and info.usage.output_tokens > 0


# Each read of the worker after its run ended in memory, and what it must show once committed.
READS: dict[str, tuple[Callable[[Runtime, str], Awaitable[Any]], Callable[[Any], bool]]] = {
    "GetWorker": (
        lambda rt, wid: rt.get_worker(wid),
        lambda w: w.state is WorkerState.IDLE and w.usage.output_tokens > 0,
    ),
    "ListWorkers": (
        lambda rt, wid: rt.list_workers(),
        lambda p: [w.state for w in p.items] == [WorkerState.IDLE],
    ),
    "ListWorkers(state=IDLE)": (
        lambda rt, wid: rt.list_workers(state=WorkerState.IDLE),
        lambda p: p.total_size == 1,
    ),
    "GetUsage(worker)": (
        lambda rt, wid: rt.get_usage(wid),
        lambda u: u.usage.output_tokens > 0,
    ),
    "GetUsage(runtime)": (
        lambda rt, wid: rt.get_usage(),
        lambda u: u.usage.output_tokens > 0,
    ),
    "GetRuntime": (
        lambda rt, wid: rt.get_runtime(),
        lambda i: i.workers_by_state[WorkerState.IDLE] == 1 and i.active_runs == 0,
    ),
    "GetTranscript": (
        lambda rt, wid: rt.get_transcript(wid),
        lambda p: p.total_size == 2 and len(p.items) == 2,
    ),
}


@pytest.mark.parametrize("name", list(READS))
async def test_a_worker_is_shown_idle_once_its_run_finished_is_committed(
    tmp_path: Path, name: str
) -> None:
    read, shows = READS[name]
    store = HeldReports(tmp_path / "runtime.sqlite3")
    rt = Runtime(store=store, config=parse_config({}))
    await rt.start()
    try:
        wid = (await rt.create_worker(profile="echo")).worker.worker_id
        store.holding = True  # from here on, the Runtime learns of no commit
        reported = rt.info().last_seq
        sending = asyncio.ensure_future(rt.send_input(wid, "one two three"))
        await eventually(lambda: _ended(rt), within=BOUND, what="the run ended in memory")

        reading = asyncio.ensure_future(read(rt, wid))
        await asyncio.sleep(HELD)
        # Not before the commit (before the fix: at once, with the run's end uncommitted).
        assert not reading.done(), f"{name} answered before the commit"

        store.release()
        answer = await asyncio.wait_for(reading, BOUND)
        await asyncio.wait_for(sending, BOUND)
        assert shows(answer), answer
        events = (await rt.list_events(after_seq=reported, worker_id=wid)).events
        finished = [e.seq for e in events if isinstance(e.payload, RunFinished)]
        assert len(finished) == 1
        assert finished[0] > reported  # it was held, then committed
        if name == "GetRuntime":  # the counts are as of its last_seq, which covers the run's end
            assert answer.last_seq >= finished[0]
        if name == "GetTranscript":  # the cursor is committed: nothing after it is on the page
            assert finished[0] <= answer.resume_after_seq <= rt.info().last_seq
        # and once committed, answered at once
        assert shows(await asyncio.wait_for(read(rt, wid), BOUND))
    finally:
        store.release()
        await rt.close()


async def test_a_created_worker_is_shown_once_its_creation_is_committed(tmp_path: Path) -> None:
    store = HeldReports(tmp_path / "runtime.sqlite3")
    rt = Runtime(store=store, config=parse_config({}))
    await rt.start()
    try:
        wid = str(uuid.uuid4())
        store.holding = True
        creating = asyncio.ensure_future(rt.create_worker(worker_id=wid, profile="echo"))
        await eventually(lambda: sum(rt.info().workers_by_state.values()) == 1, within=BOUND)

        getting = asyncio.ensure_future(rt.get_worker(wid))
        listing = asyncio.ensure_future(rt.list_workers())
        await asyncio.sleep(HELD)
        assert not getting.done(), "GetWorker showed a worker whose creation is not committed"
        assert not listing.done(), "ListWorkers showed a worker whose creation is not committed"
        assert not creating.done()  # (CreateWorker itself answers once committed)

        store.release()
        assert (await asyncio.wait_for(getting, BOUND)).worker_id == wid
        assert [w.worker_id for w in (await asyncio.wait_for(listing, BOUND)).items] == [wid]
        assert (await asyncio.wait_for(creating, BOUND)).worker.worker_id == wid
    finally:
        store.release()
        await rt.close()


async def test_a_deleted_worker_is_not_found_once_its_delete_is_committed(
    tmp_path: Path,
) -> None:
    store = HeldReports(tmp_path / "runtime.sqlite3")
    rt = Runtime(store=store, config=parse_config({}))
    await rt.start()
    try:
        wid = (await rt.create_worker(profile="echo")).worker.worker_id
        run = (await rt.send_input(wid, "one two")).run
        await rt.wait_run(run.run_id, timeout=BOUND)
        await rt.stop_worker(wid)  # committed: the delete below only appends its own batch
        store.holding = True
        deleting = asyncio.ensure_future(rt.delete_worker(wid))
        await eventually(lambda: sum(rt.info().workers_by_state.values()) == 0, within=BOUND)

        listing = asyncio.ensure_future(rt.list_workers())
        # every NOT_FOUND about it, of a read or a change
        calls = {
            "GetWorker": rt.get_worker(wid),
            "GetRun": rt.get_run(run.run_id),
            "WaitRun": rt.wait_run(run.run_id, timeout=BOUND),
            "GetTranscript": rt.get_transcript(wid),
            "GetUsage": rt.get_usage(wid),
            "SendInput": rt.send_input(wid, "more"),
            "StopWorker": rt.stop_worker(wid),
            "CancelRun": rt.cancel_run(run.run_id),
        }
        pending = {name: asyncio.ensure_future(call) for name, call in calls.items()}
        await asyncio.sleep(HELD)
        # before the fix: NOT_FOUND (and an empty list) at once, the delete uncommitted — after a
        # kill -9 there the worker comes back
        assert not listing.done(), "ListWorkers left out a worker whose delete is not committed"
        early = [name for name, task in pending.items() if task.done()]
        assert not early, f"NOT_FOUND before the delete was committed: {early}"
        assert not deleting.done()

        store.release()
        assert (await asyncio.wait_for(listing, BOUND)).items == ()
        for name, task in pending.items():
            with pytest.raises((errors.WorkerNotFound, errors.RunNotFound)):
                await asyncio.wait_for(task, BOUND)
            assert task.done(), name
        await asyncio.wait_for(deleting, BOUND)
        # once committed, NOT_FOUND at once
        with pytest.raises(errors.WorkerNotFound):
            await asyncio.wait_for(rt.get_worker(wid), BOUND)
    finally:
        store.release()
        await rt.close()


async def test_a_transcript_cursor_is_never_past_the_committed_seq(tmp_path: Path) -> None:
    """An idle worker's transcript is answered at once while another worker's commit is held
    (a read waits only for its own worker), and its resume cursor is a committed seq: a seq not
    yet committed is reused after a crash, and a subscriber resuming after it would skip the
    event that takes it."""
    store = HeldReports(tmp_path / "runtime.sqlite3")
    rt = Runtime(store=store, config=parse_config({}))
    await rt.start()
    try:
        quiet = (await rt.create_worker(profile="echo")).worker.worker_id
        busy = (await rt.create_worker(profile="echo")).worker.worker_id
        store.holding = True
        sending = asyncio.ensure_future(rt.send_input(busy, "one two three"))
        await eventually(lambda: _ended(rt), within=BOUND, what="the run ended in memory")
        committed = rt.info().last_seq

        page = await asyncio.wait_for(rt.get_transcript(quiet), BOUND)  # not held by `busy`
        assert (await asyncio.wait_for(rt.get_worker(quiet), BOUND)).state is WorkerState.IDLE
        assert not sending.done()  # (still held)
        # before the fix: the newest assigned seq, which is not committed
        assert page.resume_after_seq <= committed
        store.release()
        await asyncio.wait_for(sending, BOUND)
    finally:
        store.release()
        await rt.close()


async def test_idempotent_retries_answer_once_committed(tmp_path: Path) -> None:
    """A retried CreateWorker returns the worker as it is now, a retried SendInput the run as it
    is now: once committed, like GetWorker and GetRun."""
    store = HeldReports(tmp_path / "runtime.sqlite3")
    # a slow echo (25 ms a word): the run is still active when its input is acknowledged
    slow = {"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 25}}}}
    rt = Runtime(store=store, config=parse_config(slow))
    await rt.start()
    try:
        wid = (await rt.create_worker(profile="slow", request_id="create-1")).worker.worker_id
        accepted = await rt.send_input(wid, " ".join(["word"] * 40), request_id="send-1")
        store.holding = True
        # its end is still to come, so it cannot have been reported (else a 1 s stall)
        assert rt.info().active_runs == 1
        await eventually(lambda: _ended(rt), within=BOUND, what="the run ended in memory")

        creating = asyncio.ensure_future(rt.create_worker(profile="slow", request_id="create-1"))
        sending = asyncio.ensure_future(
            rt.send_input(wid, " ".join(["word"] * 40), request_id="send-1")
        )
        await asyncio.sleep(HELD)
        assert not creating.done(), "a retried CreateWorker showed the worker's uncommitted state"
        assert not sending.done(), "a retried SendInput showed the run's uncommitted end"

        store.release()
        created = await asyncio.wait_for(creating, BOUND)
        assert created.worker.worker_id == wid
        assert created.worker.state is WorkerState.IDLE
        again = await asyncio.wait_for(sending, BOUND)
        assert again.run.run_id == accepted.run.run_id
        assert again.run.state.terminal
    finally:
        store.release()
        await rt.close()
