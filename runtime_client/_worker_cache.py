"""One runtime's worker cache: a snapshot kept current by the runtime's lifecycle events.

Filled in the one order that loses nothing: read the log's ``last_seq`` S, page through
ListWorkers, then follow the event stream from S. A worker created while the pages were read is
in a page *and* arrives as an event after S — applying it twice is harmless (the event carries
the same worker), and anything at or below the cursor is dropped by seq. When the cursor can no
longer be followed (CURSOR_EXPIRED: retention passed it; CURSOR_AHEAD: the log is behind it) the
owner takes a fresh snapshot.

Reading the cache (:meth:`WorkerCache.views`) never waits on anything: it is what
``RuntimeRegistry.list_workers`` answers from.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

from runtime_client._handle import RuntimeHandle
from runtime_client._models import (
    Event,
    RunFinished,
    RunQueued,
    RunStarted,
    Worker,
    WorkerCreated,
    WorkerDeleted,
    WorkerState,
    WorkerStateChanged,
    WorkerStopped,
)
from runtime_client._registry_types import WorkerView

__all__ = ["LIFECYCLE_TYPES", "WorkerCache"]

# The payload kinds that change what the cache holds: the cache's stream asks for only these.
LIFECYCLE_TYPES: tuple[str, ...] = (
    WorkerCreated.KIND,
    WorkerStateChanged.KIND,
    RunQueued.KIND,
    RunStarted.KIND,
    RunFinished.KIND,
    WorkerStopped.KIND,
    WorkerDeleted.KIND,
)


class WorkerCache:
    """Workers by id plus the seq they are current to. Single-threaded (one event loop)."""

    def __init__(self) -> None:
        self.workers: dict[str, Worker] = {}
        self.cursor = 0  # the last seq applied (or the snapshot's S)
        self.loaded = False  # a snapshot was taken at least once
        self.version = 0  # bumped by every change: the unfiltered view is rebuilt only then
        self._all: tuple[int, str, bool, tuple[WorkerView, ...]] | None = None

    async def snapshot(self, handle: RuntimeHandle, page_size: int = 0) -> None:
        """Replace the contents with a fresh snapshot (S first, then the pages)."""
        start = (await handle.get_runtime()).last_seq
        workers: dict[str, Worker] = {}
        async for worker in handle.iter_workers(page_size=page_size):
            workers[worker.worker_id] = worker
        self.workers = workers
        self.cursor = start
        self.loaded = True
        self.version += 1

    def apply(self, event: Event) -> None:
        """Apply one event of the runtime's log (events at or below the cursor are dropped)."""
        if event.seq <= self.cursor:
            return
        self.cursor = event.seq
        self.version += 1
        payload = event.payload
        workers = self.workers
        if isinstance(payload, WorkerCreated):
            workers[payload.worker.worker_id] = payload.worker
            return
        worker = workers.get(event.worker_id)
        if worker is None:
            return
        if isinstance(payload, WorkerStateChanged):
            workers[event.worker_id] = replace(worker, state=payload.state)
        elif isinstance(payload, RunQueued):
            workers[event.worker_id] = replace(worker, queued_runs=worker.queued_runs + 1)
        elif isinstance(payload, RunStarted):
            workers[event.worker_id] = replace(
                worker,
                active_run_id=payload.run.run_id,
                queued_runs=max(0, worker.queued_runs - 1),
            )
        elif isinstance(payload, RunFinished):
            if worker.active_run_id == payload.run.run_id:
                workers[event.worker_id] = replace(worker, active_run_id="")
            else:  # a queued run that never started (cancelled, stopped)
                workers[event.worker_id] = replace(
                    worker, queued_runs=max(0, worker.queued_runs - 1)
                )
        elif isinstance(payload, WorkerStopped):
            workers[event.worker_id] = replace(
                worker, state=WorkerState.STOPPED, active_run_id="", queued_runs=0
            )
        elif isinstance(payload, WorkerDeleted):
            del workers[event.worker_id]

    def upsert(self, worker: Worker, seq: int) -> None:
        """A worker the registry just created (``seq`` of its WorkerCreated): shown at once, unless
        the stream already brought something newer."""
        if seq > self.cursor and worker.worker_id not in self.workers:
            self.workers[worker.worker_id] = worker
            self.version += 1

    def live_count(self) -> int:
        return sum(1 for w in self.workers.values() if w.state is not WorkerState.STOPPED)

    def views(
        self,
        runtime_id: str,
        *,
        stale: bool,
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Iterable[WorkerView]:
        """The cached workers matching ``state`` and carrying all ``labels``."""
        if state is None and not labels:
            cached = self._all
            if cached is not None and cached[:3] == (self.version, runtime_id, stale):
                return cached[3]
            views = tuple(WorkerView(runtime_id, w, stale) for w in self.workers.values())
            self._all = (self.version, runtime_id, stale, views)
            return views
        wanted = labels.items() if labels else None
        return [
            WorkerView(runtime_id, w, stale)
            for w in self.workers.values()
            if (state is None or w.state == state)
            and (wanted is None or wanted <= w.labels.items())
        ]
