"""``Runtime.wait_run``: wait for a run's end by subscription, never by polling."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime_server import errors
from runtime_server.model import Run, RunFinished, WorkerDeleted

if TYPE_CHECKING:
    from runtime_server.runtime._queries import RuntimeQueries


async def wait_for_run(rt: RuntimeQueries, run_id: str) -> Run:
    """The run once terminal. It reads the run and subscribes (worker-filtered) from the committed
    head with no ``await`` in between: a run still active then has its RunFinished beyond that
    head, so the subscription cannot miss it (and a RunFinished delivered by the subscription is
    committed). If the subscription is cut (lagging, a cursor aged out) it starts over; if it
    ends without the run's end (the worker was deleted, the Runtime closed), the run is read
    again (RUN_NOT_FOUND for a deleted worker's run). A run read from memory is returned once
    its worker's changes so far are committed (``rt._settled``, see _settle): it ends in memory
    a moment before its RunFinished is committed (or answers STORE_FAILURE if a store failure
    discarded it)."""
    log, get_run = rt._require_log(), rt._get_run
    while True:
        run = get_run(run_id)
        if run.state.terminal:
            await rt._settled(rt._unsettled(run.worker_id))
            return run
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
        await rt._settled(rt._unsettled(run.worker_id))
        return run
