"""Workspace claims follow the Runtime's roll-back after a failed write (a real SQLite file capped
with ``PRAGMA max_page_count``, as in test_store_failure_rollback): a StopWorker whose commit
failed did not happen, so the worker keeps its read-write claim; a CreateWorker whose commit
failed created nothing, so it holds no claim."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from serving import eventually
from test_store_failure_rollback import BOUND, CONFIG, cap

from runtime_server.errors import StoreFailure, WorkspaceConflict
from runtime_server.model import MountMode, TextDelta, WorkerState, Workspace
from runtime_server.runtime import HostPolicy, Runtime, StoreState
from runtime_server.store import SqliteStore

RW = MountMode.READ_WRITE


async def test_claims_are_rebuilt_from_the_committed_state(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    for d in ("a", "b"):
        (tmp_path / "ws" / d).mkdir(parents=True)
    store = SqliteStore(tmp_path / "data" / "runtime.sqlite3", retention_interval=0.0)
    policy = HostPolicy(allowed_roots=(str(tmp_path / "ws"),))
    rt = Runtime(store=store, config=CONFIG, policy=policy)
    await rt.start()
    try:
        a = Workspace(str(tmp_path / "ws" / "a"), root_mode=RW)
        b = Workspace(str(tmp_path / "ws" / "b"), root_mode=RW)
        w1 = (await rt.create_worker(profile="slow", workspace=a)).worker.worker_id
        # a run streams (so the store keeps writing) when the disk fills up
        active = await rt.send_input(w1, " ".join(f"word{i} " * 30 for i in range(400)))
        sub = rt.subscribe(worker_id=w1, after_seq=active.seq)
        async with asyncio.timeout(BOUND):
            while True:
                event = await sub.next()
                assert event is not None, "the subscription closed before a TextDelta"
                if isinstance(event.payload, TextDelta):
                    break
        sub.close()

        cap(store, 0)  # the disk is full
        with pytest.raises(StoreFailure):
            await rt.stop_worker(w1)
        await eventually(lambda: rt.info().store_state is not StoreState.OK, within=BOUND)
        cap(store, None)
        await eventually(lambda: rt.info().store_state is StoreState.OK, within=30)

        # the stop did not happen: w1 is live and still holds a, read-write
        assert (await rt.get_worker(w1)).state is not WorkerState.STOPPED
        assert [(c.worker_id, c.mode) for c in (await rt.list_workspace_claims()).items] == [
            (w1, RW)
        ]
        with pytest.raises(WorkspaceConflict):
            await rt.create_worker(workspace=a)

        cap(store, 0)
        with pytest.raises(StoreFailure):
            # a display name large enough to need a new page
            await rt.create_worker(workspace=b, labels={f"k{i}": "v" * 200 for i in range(60)})
        cap(store, None)
        await eventually(lambda: rt.info().store_state is StoreState.OK, within=30)
        # the create did not happen: b is free
        assert [c.worker_id for c in (await rt.list_workspace_claims()).items] == [w1]
        w2 = (await rt.create_worker(workspace=b)).worker.worker_id
        assert {c.worker_id for c in (await rt.list_workspace_claims()).items} == {w1, w2}
    finally:
        await rt.close()
