"""The runtime-wide memory budget (``Limits.max_memory_bytes``) and the input queues it counts.

What is counted (estimated bytes, see ``runtime_server.store._sizes``)::

    held = store.memory_bytes()          the memory store's own data (0 for SQLite: on disk)
         + transcript windows            <= transcript_cache_bytes (emptied first under pressure)
         + histories read for active runs (a history larger than its window, while its run runs)
         + queued inputs                 text of runs waiting in a queue (dropped once started)
         + records                       workers, retained runs (metadata only) and create keys,
                                         a fixed allowance each; and bundle workers' profile
                                         snapshots, by their size (``_bundles``)

New work — an input (SendInput, CreateWorker's initial input) or a worker — is admitted only if
``held + its size <= max_memory_bytes``; otherwise the transcript windows are emptied (they can be
read back from the store) and, if that is not enough, the request is refused with
:class:`~runtime_server.errors.MemoryBudgetExceeded` (RESOURCE_EXHAUSTED). Work already admitted
is never cut: a run's own output is not refused midway, so the bound is checked at admission and
the budget should leave room for the answers of the runs it admits.

Not counted: what an active run holds in the engine (the request it sends, the answer it is
streaming), per-worker idempotency keys, subscribers' buffers (bounded by
``subscriber_buffer_events`` each) and the interpreter itself.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from runtime_server import errors
from runtime_server.model import Run
from runtime_server.runtime._transcripts import Transcripts
from runtime_server.store import Store, run_input_bytes

WORKER_RECORD_BYTES = 2_000  # a Worker, its slot, window and queue objects, dict entries
RUN_RECORD_BYTES = 700  # a Run without its input text, and its dict entry
KEY_RECORD_BYTES = 400  # an idempotency key


class MemoryBudget:
    def __init__(
        self,
        limit: int,
        store: Store,
        transcripts: Transcripts,
        records: Callable[[], int],
    ) -> None:
        self.limit = limit
        self._store = store
        self._transcripts = transcripts
        self._records = records  # estimated bytes of the Runtime's records
        self.queued_bytes = 0  # kept by InputQueue

    def held(self) -> int:
        t = self._transcripts
        return (
            self._store.memory_bytes()
            + t.bytes
            + t.loaded_bytes
            + self.queued_bytes
            + self._records()
        )

    def admit(self, needed: int) -> None:
        """Raise :class:`MemoryBudgetExceeded` unless ``needed`` more bytes fit the budget."""
        held = self.held()
        if held + needed <= self.limit:
            return
        self._transcripts.evict_all()
        held = self.held()
        if held + needed > self.limit:
            raise errors.MemoryBudgetExceeded(self.limit, held, needed)


class InputQueue(deque[Run]):
    """A worker's queue of runs; the input texts it holds are counted in the budget."""

    __slots__ = ("_budget",)

    def __init__(self, budget: MemoryBudget, runs: Iterable[Run] = ()) -> None:
        super().__init__(runs)
        self._budget = budget
        budget.queued_bytes += sum(map(run_input_bytes, self))

    def append(self, run: Run) -> None:
        super().append(run)
        self._budget.queued_bytes += run_input_bytes(run)

    def appendleft(self, run: Run) -> None:
        super().appendleft(run)
        self._budget.queued_bytes += run_input_bytes(run)

    def popleft(self) -> Run:
        run = super().popleft()
        self._budget.queued_bytes -= run_input_bytes(run)
        return run

    def remove(self, run: Run) -> None:
        super().remove(run)
        self._budget.queued_bytes -= run_input_bytes(run)

    def clear(self) -> None:
        self._budget.queued_bytes -= sum(map(run_input_bytes, self))
        super().clear()
