"""Runs by terminal state stay true across a store failure: when the store recovers, the Runtime
reloads every run from the file, and those reloaded runs must not be counted again; the run the
failure ended counts once, as INTERRUPTED. A real SQLite file whose growth is capped (SQLite
answers SQLITE_FULL exactly as a full disk does), the Runtime's own observer hook."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from serving import eventually
from test_store_failure_rollback import CONFIG, cap, state_is

import engine
from runtime_server.errors import StoreFailure
from runtime_server.model import RunState, TextDelta
from runtime_server.runtime import Runtime, StoreState
from runtime_server.store import SqliteStore

BOUND = 10.0  # seconds: generous ceiling for one answer


class Recorder:
    """A RuntimeObserver that keeps what it is told."""

    def __init__(self) -> None:
        self.runs: Counter[str] = Counter()

    def run_finished(self, state: str, duration_s: float | None) -> None:
        self.runs[state] += 1

    def diagnostic(self, level: str, code: str) -> None:
        pass

    def provider_request(
        self, provider: str, model: str, outcome: str, duration_s: float, first_byte_s: float | None
    ) -> None:
        pass

    def tokens(self, provider: str, model: str, usage: engine.Usage) -> None:
        pass

    def commit(self, latency_s: float, events: int) -> None:
        pass


async def test_runs_reloaded_after_a_store_failure_are_not_counted_again(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "runtime.sqlite3", retention_interval=0.0)
    rt = Runtime(store=store, config=CONFIG)
    seen = Recorder()
    rt.set_observer(seen)
    await rt.start()
    try:
        w = (await rt.create_worker(profile="slow")).worker.worker_id
        done = await rt.send_input(w, "committed before the failure")
        await rt.wait_run(done.run.run_id, timeout=BOUND)
        assert seen.runs == {"COMPLETED": 1}
        active = await rt.send_input(w, " ".join(f"word{i} " * 30 for i in range(400)))
        sub = rt.subscribe(worker_id=w, after_seq=active.seq)
        async with asyncio.timeout(BOUND):
            while True:
                event = await sub.next()
                assert event is not None, "the subscription closed before a TextDelta"
                if isinstance(event.payload, TextDelta):
                    break
        sub.close()

        cap(store, 0)  # the disk is full: the streaming run's next commit fails
        await eventually(lambda: rt.info().store_state is StoreState.FAILING)
        with pytest.raises(StoreFailure):
            await rt.send_input(w, "refused while failing")
        await eventually(lambda: state_is(rt, active.run.run_id, RunState.INTERRUPTED))
        cap(store, None)  # space is back: the Runtime reloads every run from the file
        await eventually(lambda: rt.info().store_state is StoreState.OK, within=30)
        assert (await rt.get_run(done.run.run_id)).state is RunState.COMPLETED
        assert seen.runs == {"COMPLETED": 1, "INTERRUPTED": 1}

        again = await rt.send_input(w, "after the recovery")
        await rt.wait_run(again.run.run_id, timeout=BOUND)
        assert seen.runs == {"COMPLETED": 2, "INTERRUPTED": 1}
    finally:
        await rt.close()
