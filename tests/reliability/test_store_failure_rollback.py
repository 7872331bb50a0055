"""The Runtime's roll-back after a failed write, at the store's real file layer: an embedded
Runtime on a real SQLite file whose growth is capped (``PRAGMA max_page_count``, which makes
SQLite answer SQLITE_FULL exactly as a full disk does) while a run streams and a StopWorker is
in flight.

- the StopWorker answers STORE_FAILURE promptly (no hang), and the stop did not happen: once
  writes resume, the worker is not STOPPED and takes input again (it used to refuse it);
- while failing, GetRuntime says FAILING, changes are refused at once, and nothing uncommitted
  is shown as state: the run that was active is INTERRUPTED ("the store failed ...");
- when the cap is lifted, writes resume without a restart, and everything committed is intact
  after a reopen.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from serving import eventually

from runtime_server.errors import StoreFailure
from runtime_server.model import DiagnosticLevel, RunState, TextDelta, WorkerState
from runtime_server.runtime import Runtime, StoreState, parse_config
from runtime_server.store import SqliteStore

CONFIG = parse_config({"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 20}}}})
BOUND = 10.0  # seconds: generous ceiling for one answer


def cap(store: SqliteStore, pages: int | None) -> None:
    """Let the file grow by at most ``pages`` pages (None: no cap)."""
    conn = store._conn
    assert conn is not None
    if pages is None:
        conn.execute("PRAGMA max_page_count = 1073741823")
        return
    now = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {now + pages}")


async def state_is(rt: Runtime, run_id: str, state: RunState) -> bool:
    try:
        return (await rt.get_run(run_id)).state is state
    except StoreFailure:  # memory not rolled back yet: it could show a discarded change (_settle)
        return False


async def test_failed_stop_rolls_back_and_writes_resume(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    store = SqliteStore(path, retention_interval=0.0)
    rt = Runtime(store=store, config=CONFIG)
    await rt.start()
    try:
        keep = (await rt.create_worker(profile="slow")).worker.worker_id
        w = (await rt.create_worker(profile="slow")).worker.worker_id
        acked = await rt.send_input(keep, "committed before the failure")
        await rt.wait_run(acked.run.run_id, timeout=BOUND)
        long_text = " ".join(f"word{i} " * 30 for i in range(400))  # streams for seconds
        active = await rt.send_input(w, long_text)
        sub = rt.subscribe(worker_id=w, after_seq=active.seq)
        async with asyncio.timeout(BOUND):
            while True:
                event = await sub.next()
                assert event is not None, "the subscription closed before a TextDelta"
                if isinstance(event.payload, TextDelta):
                    break
        sub.close()

        cap(store, 0)  # the disk is full: the next commit that needs a page fails
        async with asyncio.timeout(BOUND):
            with pytest.raises(StoreFailure):
                await rt.stop_worker(w)

        assert rt.info().store_state is StoreState.FAILING
        with pytest.raises(StoreFailure):
            await rt.send_input(keep, "refused while failing")
        with pytest.raises(StoreFailure):
            await rt.create_worker()
        errors_ = [
            d for d in (await rt.list_diagnostics()).items if d.level is DiagnosticLevel.ERROR
        ]
        assert [d.code for d in errors_] == ["STORE_FAILURE"]
        # Memory went back to what is committed: the stop never happened, the run is over.
        await eventually(lambda: state_is(rt, active.run.run_id, RunState.INTERRUPTED))
        assert (await rt.get_worker(w)).state is not WorkerState.STOPPED

        cap(store, None)  # space is back
        await eventually(lambda: rt.info().store_state is StoreState.OK, within=30)
        run = await rt.get_run(active.run.run_id)
        assert run.state is RunState.INTERRUPTED
        assert run.error is not None
        assert "the store failed" in run.error.message
        assert (await rt.get_worker(w)).state is WorkerState.IDLE
        again = await rt.send_input(w, "accepted again")  # the failed stop left no trace
        await rt.wait_run(again.run.run_id, timeout=BOUND)
        assert (await rt.stop_worker(w)).state is WorkerState.STOPPED
    finally:
        await rt.close()

    rt = Runtime(store=SqliteStore(path, retention_interval=0.0), config=CONFIG)
    await rt.start()
    try:
        assert (await rt.get_run(acked.run.run_id)).state is RunState.COMPLETED
        assert (await rt.get_run(active.run.run_id)).state is RunState.INTERRUPTED
        assert (await rt.get_run(again.run.run_id)).state is RunState.COMPLETED
        assert (await rt.get_worker(w)).state is WorkerState.STOPPED
        seqs = [e.seq for e in (await rt.list_events(page_size=1000)).events]
        assert seqs == list(range(1, len(seqs) + 1))
    finally:
        await rt.close()
