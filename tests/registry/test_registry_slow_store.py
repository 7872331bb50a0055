"""A runtime whose SQLite writer stalls (without failing) stays READY in the registry.

GetRuntime is a read of committed state: it waits for the commits in flight (runtime._settle).
The registry's refresh probe is a GetRuntime with a short deadline, so a writer stalled for
longer than that — a slow disk, a long checkpoint — used to mark a live runtime UNREACHABLE
(and every routed call then failed fast with RUNTIME_UNAVAILABLE). Health is liveness: a probe
that misses its deadline now asks grpc.health.v1 Check, which the runtime answers without its
store, and a SERVING answer keeps the runtime READY (runtime_client._monitor).

The stall is real: a real ``serve`` subprocess on SQLite, and this test holds SQLite's write
lock from another connection (BEGIN IMMEDIATE) for several probe deadlines — shorter than the
writer's busy timeout (5 s), so the writer waits and then commits, never fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

from registry_support import RegistryFactory, RemoteFactory, status_of, wait_state
from serving import eventually

from runtime_client import Created, DeadlineExceeded, RegistryOptions, RuntimeHealth

PROBE = 0.4  # the registry's probe deadline here (the default is 2 s)
OPTIONS = RegistryOptions(
    probe_timeout_s=PROBE,
    call_timeout_s=30.0,
    refresh_interval_s=0.1,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
)
BOUND = 30.0  # a safety net on a shared machine, not a speed assertion


async def test_a_stalled_writer_keeps_a_live_runtime_ready(
    remote: RemoteFactory, registry_factory: RegistryFactory
) -> None:
    r1 = await remote("r1")
    reg = await registry_factory(OPTIONS)
    reg.add_remote(r1.target, alias="r1")
    await reg.start()
    await wait_state(reg, "r1", RuntimeHealth.READY)

    seen: list[RuntimeHealth] = []
    watching = True

    async def watch() -> None:
        while watching:
            state = status_of(reg, "r1").state
            if not seen or seen[-1] is not state:
                seen.append(state)
            await asyncio.sleep(0.01)

    watcher = asyncio.ensure_future(watch())
    client = r1.proc.client(timeout=BOUND)
    impatient = r1.proc.client(timeout=PROBE)
    blocker = sqlite3.connect(r1.data_dir / "runtime.sqlite3", isolation_level=None, timeout=BOUND)
    creating: asyncio.Future[Created] | None = None
    try:
        blocker.execute("BEGIN IMMEDIATE")  # the runtime's writer now waits for the lock
        creating = asyncio.ensure_future(client.create_worker())  # something to commit

        # the stall is visible: GetRuntime waits for that commit past a probe's deadline
        async def stalled() -> bool:
            try:
                await impatient.get_runtime()
            except DeadlineExceeded:
                return True
            return False  # (the create had not reached the runtime yet)

        await eventually(stalled, within=BOUND, what="GetRuntime stalled by the writer")
        # several of the registry's refresh probes miss their deadline meanwhile
        await asyncio.sleep(3 * PROBE)
        assert not creating.done()  # (still stalled: nothing was committed)
    finally:
        with contextlib.suppress(sqlite3.Error):
            blocker.execute("ROLLBACK")
        blocker.close()
    created = await asyncio.wait_for(creating, BOUND)  # the writer committed: it never failed
    # the refresh reads the runtime again: its load now counts the worker
    await eventually(
        lambda: (info := status_of(reg, "r1").info) is not None and info.workers.total == 1,
        within=BOUND,
        what="the registry's refresh after the stall",
    )
    watching = False
    await watcher
    # before the fix: [READY, UNREACHABLE, READY] (a probe's DEADLINE_EXCEEDED)
    assert seen == [RuntimeHealth.READY], seen
    handle = reg.handle(created.worker.runtime_id)
    assert (await handle.get_worker(created.worker.worker_id)).worker_id == created.worker.worker_id
