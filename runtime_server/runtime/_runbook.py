"""The runs the Runtime holds, by id, and the Runtime-wide totals that go with them.

Finished runs are kept for GetRun up to ``limits.max_retained_runs`` (the oldest finished are
forgotten first; their records stay in a durable store and their events age out with the log).
Usage: ``usage`` is the sum over the workers held now (as a restart rebuilds it: a deleted
worker's usage leaves with its data), ``deleted`` what deleted workers had (for the lifetime
totals, which never decrease; see ``_lifetime``)."""

from __future__ import annotations

from collections import deque
from dataclasses import replace

import engine
from runtime_server import errors
from runtime_server.model import Run, now
from runtime_server.runtime._lifetime import UsageTotals
from runtime_server.runtime._observer import RuntimeObserver


class RunBook:
    """Runs by id, their retention order, and the usage and run totals."""

    def __init__(self, max_retained_runs: int) -> None:
        self._max_retained = max(1, max_retained_runs)
        self.runs: dict[str, Run] = {}
        self._finished: deque[str] = deque()  # finished run ids, oldest first
        self.run_count = 0  # runs ever accepted by the workers held now
        self.usage = engine.Usage()  # of the workers held now (finished runs)
        self.deleted = UsageTotals()  # usage and runs of deleted workers (see _lifetime)
        self.observer: RuntimeObserver | None = None  # operators' metrics (_observer)

    def reset(self) -> None:
        """Forget everything held (before the state is loaded again from the store)."""
        self.runs = {}
        self._finished = deque()
        self.run_count = 0
        self.usage = engine.Usage()

    def get(self, run_id: str) -> Run:
        run = self.runs.get(run_id)
        if run is None:
            raise errors.RunNotFound(run_id)
        return run

    def load(self, run: Run) -> None:
        """A run as the store has it (kept as metadata: the store has its input text)."""
        run = replace(run, input_text="") if run.input_text else run
        self.runs[run.run_id] = run
        self.run_count += 1
        if run.state.terminal:
            self.retire(run)

    def add(self, run: Run) -> None:
        """A run just accepted."""
        self.runs[run.run_id] = run
        self.run_count += 1

    def end(self, done: Run) -> None:
        """``done`` (terminal) ended in this process: record, retire and report it."""
        self.runs[done.run_id] = done
        self.retire(done)
        if self.observer is not None:
            # runs loaded or recovered from the store are not counted (RECOVERED reports those)
            started = done.started_at
            duration = (done.finished_at or now()) - started if started else None
            self.observer.run_finished(done.state.value, duration)

    def retire(self, run: Run) -> None:
        """``run`` just finished: keep it for GetRun, forgetting the oldest finished runs beyond
        ``max_retained_runs``."""
        self._finished.append(run.run_id)
        while len(self._finished) > self._max_retained:
            old = self.runs.get(self._finished.popleft())
            if old is not None and old.state.terminal:
                del self.runs[old.run_id]

    def forget_worker(self, worker_id: str, usage: engine.Usage, run_count: int) -> None:
        """A deleted worker's runs go; its usage leaves the held totals for the lifetime ones."""
        self.usage = self.usage - usage
        self.run_count -= run_count
        self.deleted = self.deleted.plus(usage, run_count)
        for run_id in [r.run_id for r in self.runs.values() if r.worker_id == worker_id]:
            del self.runs[run_id]
