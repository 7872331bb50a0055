"""``Runtime.wait_run``: wait for a run's end by subscription, never by polling."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from runtime_server import errors
from runtime_server.model import Run, RunFinished, WorkerDeleted
from runtime_server.runtime._eventlog import EventLog


async def committed_so_far(log: EventLog) -> None:
    """Wait until every event appended so far is committed (at once when nothing is pending). A
    finished run is reported after this: its RunFinished, appended when it ended in memory, is
    then committed. A store failure meanwhile ends the wait: the store discarded what it did not
    commit, and the Runtime's memory goes back to what it did (see _storewatch)."""
    with contextlib.suppress(errors.StoreFailure):
        await log.wait_committed(log.last_assigned_seq)


async def wait_for_run(
    log: EventLog,
    get_run: Callable[[str], Run],
    run_id: str,
    store_ok: Callable[[], bool] = lambda: True,
) -> Run:
    """The run once terminal. It reads the run and subscribes (worker-filtered) from the committed
    head with no ``await`` in between: a run still active then has its RunFinished beyond that
    head, so the subscription cannot miss it. If the subscription is cut (lagging, a cursor aged
    out) it starts over; if it ends without the run's end (the worker was deleted, the Runtime
    closed), the run is read again (RUN_NOT_FOUND for a deleted worker's run)."""
    while True:
        run = get_run(run_id)
        if run.state.terminal:
            if store_ok():  # (see get_run: reported once committed)
                await committed_so_far(log)
            return get_run(run_id)
        sub = log.subscribe(after_seq=log.committed_seq, worker_id=run.worker_id)
        try:
            async for event in sub:
                payload = event.payload
                if isinstance(payload, RunFinished) and payload.run.run_id == run_id:
                    return payload.run
                if isinstance(payload, WorkerDeleted):
                    break
        except (errors.SubscriberLagging, errors.CursorExpired):
            continue
        finally:
            sub.close()
        run = get_run(run_id)
        if run.state.terminal and store_ok():
            await committed_so_far(log)
        return run
