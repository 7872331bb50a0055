"""The SQLite store's bounded write queue: backpressure for producers that can wait.

``write()`` never blocks or refuses (a request must not wait on the disk, and the engine's
``emit`` is synchronous), so when producers outran the writer thread the queue between them grew
without bound — and with it the time from an event's write to its commit report, i.e. to its
delivery (1.4 s p99 at saturation, measured). :meth:`SqliteStore.write_wait` answers ``None``
while fewer than ``bound`` events are written but not committed, else a future that completes
once commits bring the backlog below the bound, or the store failed or closed (the producer's
next ``write()`` then says why). A run's provider stream awaits it before each stream event
(``runtime/_backpressure``), so the backlog stays within the bound plus one stream event's writes
per streaming run, and the publish latency with it.
"""

from __future__ import annotations

import asyncio
from collections import deque

from runtime_server.errors import StoreFailure

# The default bound (events written, not yet committed); the Runtime's limit
# ``store_write_backlog_events`` has the same default and ``serve`` passes it to the store.
DEFAULT_MAX_WRITE_BACKLOG = 1024


class WriteBacklog:
    """The bound and the producers waiting at it (loop side only)."""

    __slots__ = ("_waiters", "bound")

    def __init__(self, bound: int) -> None:
        if bound < 1:
            raise ValueError("max_write_backlog must be >= 1")
        self.bound = bound
        self._waiters: deque[asyncio.Future[None]] = deque()

    def wait(self, backlog: int) -> asyncio.Future[None] | None:
        if backlog < self.bound:
            return None
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        return future

    def release(self, backlog: int, *, ended: bool = False) -> None:
        """Wake every waiter if the backlog fell below the bound (or the store ``ended``)."""
        waiters = self._waiters
        if waiters and (ended or backlog < self.bound):
            while waiters:
                future = waiters.popleft()
                if not future.done():
                    future.set_result(None)


class BacklogBound:
    """The store's side of it (a mixin of SqliteStore, whose loop-side seqs it reads)."""

    _backlog: WriteBacklog
    _failure: StoreFailure | None
    _queued_seq: int  # the highest seq handed to write()
    _reported_seq: int  # the highest seq reported committed

    def write_wait(self) -> asyncio.Future[None] | None:
        """None, or a future to await before writing more (see the module docstring)."""
        return None if self._failure is not None else self._backlog.wait(self.write_backlog)

    @property
    def write_backlog(self) -> int:
        """Events written but not yet committed (seqs above the last reported one)."""
        return self._queued_seq - self._reported_seq
