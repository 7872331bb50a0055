"""Finished runs are kept for GetRun up to ``max_retained_runs`` (reported by GetRuntime); older
ones are forgotten (RUN_NOT_FOUND), while usage counts keep every run."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime_client import RunNotFound, RunState
from runtime_server import Runtime, errors
from runtime_server.model import Limits, RunFinished
from runtime_server.model import RunState as ServerRunState
from runtime_server.store import SqliteStore

if TYPE_CHECKING:
    from serving import ServeFactory


async def test_oldest_finished_runs_are_forgotten(serve: ServeFactory) -> None:
    served = await serve(limits=replace(Limits(), max_retained_runs=3))
    client = served.client
    assert (await client.get_runtime()).limits.max_retained_runs == 3
    worker = (await client.create_worker(profile="echo")).worker.worker_id
    runs = []
    for i in range(5):
        accepted = await client.send_input(worker, f"run number {i}")
        runs.append(await client.wait_run(accepted.run.run_id, timeout=30))
    assert all(r.state is RunState.COMPLETED for r in runs)

    for old in runs[:2]:
        with pytest.raises(RunNotFound):
            await client.get_run(old.run_id)
    for kept in runs[2:]:
        assert (await client.get_run(kept.run_id)).state is RunState.COMPLETED
    assert (await client.get_usage(worker)).runs == 5
    assert (await client.get_usage()).runs == 5
    # the transcript keeps everything: runs are forgotten, history is not
    assert (await client.get_transcript(worker)).total_size == 10


async def test_a_reloaded_store_is_held_to_the_same_bound(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    run_ids = []
    async with Runtime(store=SqliteStore(path)) as rt:
        worker = (await rt.create_worker()).worker.worker_id
        for i in range(5):
            accepted = await rt.send_input(worker, f"run {i}")
            run_ids.append(accepted.run.run_id)
            sub = rt.subscribe(worker_id=worker, after_seq=accepted.seq)
            async for event in sub:
                if isinstance(event.payload, RunFinished):
                    break
            sub.close()
    limits = replace(Limits(), max_retained_runs=2)
    async with Runtime(store=SqliteStore(path), limits=limits) as rt:
        for old in run_ids[:3]:
            with pytest.raises(errors.RunNotFound):
                await rt.get_run(old)
        assert [(await rt.get_run(r)).state for r in run_ids[3:]] == [ServerRunState.COMPLETED] * 2
        assert (await rt.get_usage(worker)).runs == 5
