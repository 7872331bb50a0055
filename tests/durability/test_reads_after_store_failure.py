"""A read whose answer waits for its commit answers STORE_FAILURE when the store fails meanwhile
(runtime._settle) — and so does a read made after the failure, before the Runtime has rolled its
memory back to what is committed.

A read takes its answer from memory, then waits until what it shows is committed. The store
failing during that wait used to end the wait quietly and return the answer taken before it —
a run COMPLETED, a worker IDLE with that run's usage, a worker deleted, a config bundle put —
although the store had just discarded those changes: once rolled back the run is INTERRUPTED,
the worker is back and the bundle is not there. The caller was told something that never
happened. Every read that waits is checked here: GetWorker, ListWorkers, GetRun, WaitRun,
CancelRun, GetUsage, GetRuntime, GetTranscript, ListDiagnostics, ListWorkspaceClaims,
Get/ListConfigBundles, a NOT_FOUND (of a worker whose delete is discarded) and idempotent retries.

The store is a real SQLite file. Its commit is held for real: another connection holds SQLite's
write lock, so the writer's transaction waits in SQLite's busy handler and then fails with
"database is locked" (the writer's busy timeout is shortened for the test). The failure's report
to the Runtime is held back until the reads are waiting (the store's own report, delivered
later, as HeldReports does with commit reports), and the roll-back's read of the committed state
is held too, so each moment stays open for as long as the test needs.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from serving import eventually

from runtime_server import errors
from runtime_server.model import RunState, WorkerState
from runtime_server.runtime import Runtime, StoreState, parse_config
from runtime_server.store import SqliteStore, StoredState

BOUND = 30.0  # a safety net on a shared machine, not a speed assertion
HELD = 0.2  # how long a read is given to (wrongly) answer while its commit is held
WORDS = " ".join(["word"] * 40)  # 25 ms a word: the run is active when the lock is taken
CONFIG = parse_config({"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 25}}}})
BUNDLE = b'[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\n'
DIGEST = "sha256:" + hashlib.sha256(BUNDLE).hexdigest()


class HeldFailure(SqliteStore):
    """A real SQLite store whose failure report (and the roll-back's reload) can be held."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, retention_interval=0.0)
        self.holding = False
        self.held: list[tuple[BaseException, bool, int]] = []
        self.reload_gate = asyncio.Event()
        self.reload_gate.set()

    def _on_failure(self, exc: BaseException, corrupt: bool, last_seq: int) -> None:
        if self.holding:
            self.held.append((exc, corrupt, last_seq))
        else:
            super()._on_failure(exc, corrupt, last_seq)

    def release(self) -> None:
        self.holding = False
        for report in self.held:
            super()._on_failure(*report)
        self.held.clear()

    async def reload(self) -> StoredState:
        await self.reload_gate.wait()
        return await super().reload()


Read = Callable[[], Awaitable[Any]]


def reads(rt: Runtime, wid: str, gone: str, run_id: str) -> dict[str, Read]:
    """Every read that waits for a commit, of what the failure discards."""
    return {
        "GetWorker": lambda: rt.get_worker(wid),
        "ListWorkers": lambda: rt.list_workers(),
        "ListWorkers(state=IDLE)": lambda: rt.list_workers(state=WorkerState.IDLE),
        "GetRun": lambda: rt.get_run(run_id),
        "WaitRun": lambda: rt.wait_run(run_id, timeout=BOUND),
        "CancelRun": lambda: rt.cancel_run(run_id),
        "GetUsage(worker)": lambda: rt.get_usage(wid),
        "GetUsage(runtime)": lambda: rt.get_usage(),
        "GetRuntime": lambda: rt.get_runtime(),
        "GetTranscript": lambda: rt.get_transcript(wid),
        "ListDiagnostics": lambda: rt.list_diagnostics(),
        "ListWorkspaceClaims": lambda: rt.list_workspace_claims(),
        "ListConfigBundles": lambda: rt.config_bundles.list_bundles(),
        "GetConfigBundle": lambda: rt.config_bundles.get_bundle("team", DIGEST),
        "GetWorker(deleted: NOT_FOUND)": lambda: rt.get_worker(gone),
        "CreateWorker(retry)": lambda: rt.create_worker(profile="slow", request_id="create-1"),
        "SendInput(retry)": lambda: rt.send_input(wid, WORDS, request_id="send-1"),
    }


async def outcomes(pending: Mapping[str, asyncio.Future[Any]]) -> dict[str, str]:
    """What each read answered: the error's class name, or the value's type when it answered."""
    out = {}
    for name, task in pending.items():
        try:
            value = await asyncio.wait_for(task, BOUND)
        except errors.RuntimeServiceError as exc:
            out[name] = type(exc).__name__
        else:
            out[name] = f"answered {type(value).__name__}"
    return out


async def test_a_store_failure_during_a_reads_wait_is_store_failure(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    store = HeldFailure(path)
    rt = Runtime(store=store, config=CONFIG)
    await rt.start()
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        wid = (await rt.create_worker(profile="slow", request_id="create-1")).worker.worker_id
        gone = (await rt.create_worker(profile="echo")).worker.worker_id
        await rt.stop_worker(gone)  # committed: its delete below only appends its own batch
        accepted = await rt.send_input(wid, WORDS, request_id="send-1")  # committed
        run_id = accepted.run.run_id
        assert rt.info().active_runs == 1  # its end is still to come
        # The writer's next transaction waits for the lock (100 ms), then fails, for real.
        assert store._conn is not None
        store._conn.execute("PRAGMA busy_timeout = 100")
        store.holding = True
        blocker.execute("BEGIN IMMEDIATE")
        deleting = asyncio.ensure_future(rt.delete_worker(gone))
        putting = asyncio.ensure_future(rt.config_bundles.put_bundle("team", BUNDLE))
        await eventually(
            lambda: rt.info().active_runs == 0 and bool(store.held),
            within=BOUND,
            what="the run ended in memory and the writer failed",
        )

        # 1. reads waiting for their commit when the failure is reported
        waiting = {
            name: asyncio.ensure_future(read())
            for name, read in reads(rt, wid, gone, run_id).items()
        }
        await asyncio.sleep(HELD)
        early = [name for name, task in waiting.items() if task.done()]
        assert not early, f"answered before the commit: {early}"
        store.reload_gate.clear()  # the roll-back waits (step 2 below) until the lock is gone
        store.release()
        # before the fix: each answered what it had taken from memory before the wait
        assert await outcomes(waiting) == dict.fromkeys(waiting, "StoreFailure")
        with pytest.raises(errors.StoreFailure):
            await asyncio.wait_for(deleting, BOUND)
        with pytest.raises(errors.StoreFailure):
            await asyncio.wait_for(putting, BOUND)

        # 2. reads made after the failure, before memory is rolled back to what is committed
        assert rt.store_state is StoreState.FAILING
        # (ListDiagnostics is not among them: the diagnostics ring is not rolled back, and the
        # failure's own ERROR, never written while writes fail, is what an operator reads there)
        late = {
            name: asyncio.ensure_future(read())
            for name, read in reads(rt, wid, gone, run_id).items()
            if name != "ListDiagnostics"
        }
        # before the fix: at once, with the discarded state (the run COMPLETED, the worker gone)
        assert await outcomes(late) == dict.fromkeys(late, "StoreFailure")
        codes = [d.code for d in (await rt.list_diagnostics()).items]
        assert codes[0] == "STORE_FAILURE"

        # 3. the roll-back: what those reads would have shown never happened
        blocker.execute("ROLLBACK")
        store.reload_gate.set()

        # a def, not a lambda: in the lambda mypy kept rt.store_state narrowed to FAILING (above)
        def recovered() -> bool:
            return rt.store_state is StoreState.OK

        await eventually(recovered, within=BOUND)
        run = await rt.get_run(run_id)
        assert run.state is RunState.INTERRUPTED  # the pre-wait snapshot said COMPLETED
        assert (await rt.get_worker(gone)).state is WorkerState.STOPPED  # the delete was discarded
        with pytest.raises(errors.ConfigBundleNotFound):  # so was the put
            await rt.config_bundles.get_bundle("team", DIGEST)
    finally:
        store.reload_gate.set()
        store.release()
        blocker.close()
        await rt.close()
