"""A run is reported finished only once its RunFinished is committed (found by the flakes hunt).

The Runtime ends a run in memory and then hands its RunFinished to the store; on SQLite the commit
comes a moment later, from the writer thread. GetRun (and wait_run, and the client's wait_run,
which reads GetRun first, and CancelRun of a finished run) answered from memory at once: a
client could be told COMPLETED while the RunFinished was not yet committed (and ``last_seq``
did not cover it yet) — and after a ``kill -9`` in that moment the run comes back INTERRUPTED.
The damaged-WAL test flaked on exactly this: 2 of 100 wait_run calls against a loaded ``serve``
returned before the RunFinished was in the log.

Here the commit reports of a real SQLite store are held back (the writer commits; the Runtime is
told later, as a slow disk would make it), so the window stays open deterministically.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from held_reports import HeldReports
from serving import eventually

from runtime_server.model import RunFinished, RunState
from runtime_server.runtime import Runtime, parse_config

BOUND = 30.0  # a safety net on a shared machine, not a speed assertion


async def test_a_finished_run_is_answered_once_its_run_finished_is_committed(
    tmp_path: Path,
) -> None:
    store = HeldReports(tmp_path / "runtime.sqlite3")
    # a slow echo (25 ms a word): the run is still active when its input is acknowledged
    slow = {"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 25}}}}
    rt = Runtime(store=store, config=parse_config(slow))
    await rt.start()
    try:
        wid = (await rt.create_worker(profile="slow")).worker.worker_id
        for _ in range(5):
            accepted = await rt.send_input(wid, " ".join(["word"] * 12))  # acknowledged
            store.holding = True  # from here on, the Runtime learns of no commit
            if rt.info().active_runs == 1:
                break  # its RunFinished is still to come: it cannot have been reported
            store.release()  # (a stall let it end first: try again)
            await rt.wait_run(accepted.run.run_id, timeout=BOUND)
        else:
            pytest.fail("the run ended before its input was acknowledged, every time")
        await eventually(lambda: rt.info().active_runs == 0, within=BOUND, what="the run ended")
        reported = rt.info().last_seq  # the last commit the Runtime was told of

        getting = asyncio.ensure_future(rt.get_run(accepted.run.run_id))
        waiting = asyncio.ensure_future(rt.wait_run(accepted.run.run_id, timeout=BOUND))
        cancelling = asyncio.ensure_future(rt.cancel_run(accepted.run.run_id))  # idempotent
        await asyncio.sleep(0.2)
        # Not before the commit (before the fix: COMPLETED at once, its RunFinished uncommitted).
        assert not getting.done()
        assert not waiting.done()
        assert not cancelling.done()

        store.release()
        run = await asyncio.wait_for(getting, BOUND)
        waited = await asyncio.wait_for(waiting, BOUND)
        cancelled = await asyncio.wait_for(cancelling, BOUND)
        assert run.state is RunState.COMPLETED
        assert waited.state is RunState.COMPLETED
        assert cancelled.state is RunState.COMPLETED  # it had finished: unchanged
        events = (await rt.list_events(after_seq=accepted.seq, worker_id=wid)).events
        finished = [e for e in events if isinstance(e.payload, RunFinished)]
        assert [e.payload.run.run_id for e in finished if isinstance(e.payload, RunFinished)] == [
            accepted.run.run_id
        ]
        assert finished[0].seq > reported  # it was not reported committed while held
        assert rt.info().last_seq >= finished[0].seq
        # and once committed, a finished run is answered at once
        assert (await asyncio.wait_for(rt.get_run(accepted.run.run_id), BOUND)).state is (
            RunState.COMPLETED
        )
    finally:
        store.release()
        await rt.close()
