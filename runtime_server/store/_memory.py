"""The memory store: the embedded default. Nothing survives the process.

Values are frozen dataclasses, so storing them is storing copies: nothing a caller holds can
change what the store has. Events are kept up to the retention bound, like the durable store.

It keeps what the Runtime reads back on demand — transcripts and run inputs — and it IS the
storage, so all of it is process memory: ``memory_bytes()`` reports the estimate (see
``_sizes``), and the Runtime counts it against ``max_memory_bytes``. Events are also trimmed by
their estimated bytes (``retention_bytes``, 0 = no byte bound), so the log alone can never fill
the budget: what fills it is transcripts and inputs, which deleting workers frees.
"""

from __future__ import annotations

import bisect
from array import array
from collections import deque
from collections.abc import Sequence
from typing import cast

from runtime_server.errors import StoreFailure
from runtime_server.model import Diagnostic, Event, TranscriptEntry, now
from runtime_server.store._protocol import (
    AppendTranscript,
    CommitListener,
    DeleteConfigBundle,
    DeleteWorkerData,
    FailureListener,
    Mutation,
    PutConfigBundle,
    PutDiagnostic,
    PutRequestKey,
    PutRun,
    PutWorker,
    StoredState,
)
from runtime_server.store._sizes import entry_bytes, events_sizes, text_bytes


class MemoryStore:
    kind = "memory"

    def __init__(
        self,
        *,
        retention_events: int = 1_000_000,
        retention_seconds: float = 0.0,
        retention_bytes: int = 0,
    ) -> None:
        if retention_events < 1:
            raise ValueError("retention_events must be >= 1")
        if retention_bytes < 0:
            raise ValueError("retention_bytes must be >= 0")
        # Lists with a moving head (not deques): bisect needs O(1) indexing.
        # A trimmed event's slot is emptied at once (None), so the list's dead head (up to the
        # retained count again, until the next compaction) holds no event.
        self._events: list[Event | None] = []
        # Parallel to _events, for bisect. The two int columns are arrays, not lists: a full
        # collection of the garbage collector walks every item of a list, never an array's.
        self._seqs = array("q")
        # Parallel to _events: each one's size as counted when written. Sizes are never measured
        # again (a string grows when CPython caches its UTF-8 form): accounting must not drift.
        self._sizes = array("q")
        self._head = 0
        self._retention_events = retention_events
        self._retention_seconds = retention_seconds
        self._retention_bytes = retention_bytes
        self._event_bytes = 0  # of the retained events (from _head on)
        self._listener: CommitListener | None = None
        self._transcripts: dict[str, list[TranscriptEntry]] = {}
        self._entry_sizes: dict[str, list[int]] = {}  # parallel to _transcripts' lists
        self._inputs: dict[str, tuple[str, str, int]] = {}  # run_id -> (worker_id, text, size)
        self._runs_of: dict[str, set[str]] = {}  # worker_id -> its run ids in _inputs
        self._state_bytes = 0  # transcripts and inputs
        self._diagnostics: deque[tuple[int, Diagnostic]] = deque()
        # Config bundles' bytes (the Runtime keeps their metadata, as it keeps workers).
        self._bundles: dict[tuple[str, str], bytes] = {}

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
        for mutation in mutations:
            t = type(mutation)
            if t is not PutWorker and t is not PutRequestKey:  # the Runtime keeps those
                self._apply(mutation)
        if not events:
            return
        self._events.extend(events)
        self._seqs.extend(e.seq for e in events)
        sizes = events_sizes(events)
        self._sizes.extend(sizes)
        self._event_bytes += sum(sizes)
        self._trim()
        if self._listener is not None:
            self._listener(events[-1].seq)

    def _apply(self, mutation: Mutation) -> None:
        # Workers, runs and keys live in the Runtime's memory; only what it reads back is kept.
        if isinstance(mutation, PutRun):
            run = mutation.run
            old = self._inputs.get(run.run_id)
            if old is None or run.input_text:  # a PutRun without text keeps the input
                if old is not None:
                    self._state_bytes -= old[2]
                size = text_bytes(run.input_text)
                self._inputs[run.run_id] = (run.worker_id, run.input_text, size)
                self._runs_of.setdefault(run.worker_id, set()).add(run.run_id)
                self._state_bytes += size
        elif isinstance(mutation, AppendTranscript):
            entry = mutation.entry
            entries = self._transcripts.setdefault(entry.worker_id, [])
            sizes = self._entry_sizes.setdefault(entry.worker_id, [])
            size = entry_bytes(entry)
            if entry.index < len(entries):  # the same index again states the same fact
                self._state_bytes -= sizes[entry.index]
                entries[entry.index] = entry
                sizes[entry.index] = size
            else:
                entries.append(entry)
                sizes.append(size)
            self._state_bytes += size
        elif isinstance(mutation, PutDiagnostic):  # the ring the contract asks every store to keep
            ring = self._diagnostics
            ring.append((mutation.number, mutation.diagnostic))
            while ring and ring[0][0] <= mutation.number - max(1, mutation.keep):
                ring.popleft()
        elif isinstance(mutation, PutConfigBundle):
            key = (mutation.bundle.id, mutation.bundle.digest)
            if key not in self._bundles:
                self._bundles[key] = mutation.content
                self._state_bytes += len(mutation.content)
        elif isinstance(mutation, DeleteConfigBundle):
            content = self._bundles.pop((mutation.bundle_id, mutation.digest), None)
            if content is not None:
                self._state_bytes -= len(content)
        elif isinstance(mutation, DeleteWorkerData):
            wid = mutation.worker_id
            self._transcripts.pop(wid, None)
            self._state_bytes -= sum(self._entry_sizes.pop(wid, ()))
            for run_id in self._runs_of.pop(wid, ()):
                self._state_bytes -= self._inputs.pop(run_id)[2]

    def _trim(self) -> None:
        events = cast("list[Event]", self._events)  # from _head on, never an emptied slot
        slots = self._events
        head = self._head
        if (
            len(events) - head <= self._retention_events
            and not self._retention_seconds
            and (not self._retention_bytes or self._event_bytes <= self._retention_bytes)
        ):
            return  # the common case: nothing to trim
        last = len(events) - 1  # the newest event is never trimmed
        horizon = now() - self._retention_seconds if self._retention_seconds > 0 else None
        while head < last and (
            len(events) - head > self._retention_events
            or (horizon is not None and events[head].time < horizon)
            or (self._retention_bytes and self._event_bytes > self._retention_bytes)
        ):
            self._event_bytes -= self._sizes[head]
            slots[head] = None
            head += 1
        if horizon is not None and head == last and events[head].time < horizon:
            self._event_bytes -= self._sizes[head]
            slots[head] = None
            head += 1
        if head > 4096 and head * 2 > len(events):  # compact: amortised O(1) per event
            del events[:head]
            del self._seqs[:head]
            del self._sizes[:head]
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
        events = cast("list[Event]", self._events)  # from _head on, never an emptied slot
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

    async def read_diagnostics(self) -> list[tuple[int, Diagnostic]]:
        return list(self._diagnostics)

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> list[TranscriptEntry]:
        if limit <= 0:
            return []
        entries = self._transcripts.get(worker_id, [])
        return entries[max(0, start) : max(0, start) + limit]

    async def read_run_input(self, run_id: str) -> str | None:
        found = self._inputs.get(run_id)
        return found[1] if found is not None else None

    async def read_config_bundle(self, bundle_id: str, digest: str) -> bytes | None:
        return self._bundles.get((bundle_id, digest))

    def memory_bytes(self) -> int:
        return self._state_bytes + self._event_bytes

    async def close(self) -> None:
        return None
