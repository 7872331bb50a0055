"""The memory store: the embedded default. Nothing survives the process.

Values are frozen dataclasses, so storing them is storing copies: nothing a caller holds can
change what the store has. Events are kept up to the retention bound, like the durable store.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

from runtime_server.errors import StoreFailure
from runtime_server.model import Event, now
from runtime_server.store._protocol import CommitListener, FailureListener, Mutation, StoredState


class MemoryStore:
    kind = "memory"

    def __init__(
        self, *, retention_events: int = 1_000_000, retention_seconds: float = 0.0
    ) -> None:
        if retention_events < 1:
            raise ValueError("retention_events must be >= 1")
        # Lists with a moving head (not deques): bisect needs O(1) indexing.
        self._events: list[Event] = []
        self._seqs: list[int] = []  # parallel to _events, for bisect
        self._head = 0
        self._retention_events = retention_events
        self._retention_seconds = retention_seconds
        self._listener: CommitListener | None = None

    async def open(self, new_runtime_id: str) -> StoredState:
        return StoredState(runtime_id=new_runtime_id)

    def set_commit_listener(self, listener: CommitListener) -> None:
        self._listener = listener

    def set_failure_listener(self, listener: FailureListener) -> None:
        pass  # memory does not fail

    def resume(self) -> None:
        pass

    async def reload(self) -> StoredState:
        # Never needed (memory does not fail), and there is no state here to go back to.
        raise StoreFailure("the memory store keeps no state to reload")

    def write(self, events: Sequence[Event], mutations: Sequence[Mutation] = ()) -> None:
        # State lives in the Runtime's memory; only the event log needs keeping here.
        if not events:
            return
        self._events.extend(events)
        self._seqs.extend(e.seq for e in events)
        self._trim()
        if self._listener is not None:
            self._listener(events[-1].seq)

    def _trim(self) -> None:
        head = max(self._head, len(self._events) - self._retention_events)
        if self._retention_seconds > 0:
            horizon = now() - self._retention_seconds
            while head < len(self._events) and self._events[head].time < horizon:
                head += 1
        if head > 4096 and head * 2 > len(self._events):  # compact: amortised O(1) per event
            del self._events[:head]
            del self._seqs[:head]
            head = 0
        self._head = head

    async def flush(self) -> None:
        return None

    async def read_events(self, after_seq: int, limit: int, worker_id: str = "") -> list[Event]:
        if limit <= 0:
            return []
        if self._retention_seconds > 0:
            self._trim()
        start = bisect.bisect_right(self._seqs, after_seq, lo=self._head)
        events = self._events
        if not worker_id:
            stop = min(len(events), start + limit)
            return [events[i] for i in range(start, stop)]
        out: list[Event] = []
        for i in range(start, len(events)):
            event = events[i]
            if event.worker_id == worker_id:
                out.append(event)
                if len(out) >= limit:
                    break
        return out

    def oldest_seq(self) -> int:
        return self._seqs[self._head] if self._head < len(self._seqs) else 0

    async def close(self) -> None:
        return None
