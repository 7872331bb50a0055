"""What the Runtime keeps of each transcript: its length and a window of its newest entries.

The store holds every transcript whole; the Runtime holds, per worker, a :class:`TranscriptWindow`
— the entry count (the next index) and the newest entries, at most ``transcript_window_bytes``
of them — and all windows together hold at most ``transcript_cache_bytes`` (the least recently
used windows are emptied first). Nothing else of a transcript stays in memory.

The hot path stays O(new entries): while a window still covers its whole transcript (``base ==
0``, the usual case for conversations under the window size), a run's history is the window's
own message list, extended as entries are appended — no store read, no copy (``run_turn`` copies
before it appends). A history that has outgrown its window is read from the store at run start
(and adopted as the window again if it fits); while that run is active its bytes are counted as
``loaded_bytes`` against the memory budget, and released when it finishes.

Sizing: the default window (4 MiB) holds more text than any model's context window takes, so
with a real provider a history that outgrows it could not be sent whole anyway; the cost of the
cold path (reading and decoding the history per run) only shows with the offline echo provider.
A history's size is kept up to date as entries are appended (``total_bytes``), so neither path
sums it again.

Reads from the store wait until everything appended so far is committed: an entry that left the
window may still be on its way to the store, and must not be missed.

Interface kept list-like where the Runtime used a list: ``len(window)`` is the transcript's length
and ``window.append(entry)`` adds the next entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable

import engine
from runtime_server import errors
from runtime_server.model import TranscriptEntry
from runtime_server.store import Store, entry_bytes

WaitCommitted = Callable[[], Awaitable[None]]


class TranscriptWindow:
    """One worker's transcript as the Runtime keeps it (see the module docstring)."""

    __slots__ = (
        "_cache",
        "base",
        "bytes",
        "context",
        "entries",
        "length",
        "messages",
        "sizes",
        "total_bytes",
        "worker_id",
    )

    def __init__(self, cache: Transcripts, worker_id: str, length: int) -> None:
        self._cache = cache
        self.worker_id = worker_id
        self.length = length  # entries in the whole transcript (the next index)
        self.base = length  # index of entries[0]; 0 = the window covers everything
        self.entries: list[TranscriptEntry] = []
        self.messages: list[engine.Message] = []  # parallel to entries: the engine's history
        # Parallel to entries: each one's size as counted when it came in. Never measured again:
        # a string grows when CPython caches its UTF-8 form, and accounting must not drift.
        self.sizes: list[int] = []
        self.bytes = 0  # of the entries in the window
        # Of the whole transcript, kept up to date once known (not after a restart until the
        # first full read): a history's size without summing it again at every run.
        self.total_bytes: int | None = 0 if length == 0 else None
        # The context policy's running fit over this transcript (see runtime._context).
        self.context: object = None

    def __len__(self) -> int:
        return self.length

    def append(self, entry: TranscriptEntry) -> None:
        self.length += 1
        self.entries.append(entry)
        self.messages.append(entry.message)
        size = entry_bytes(entry)
        self.sizes.append(size)
        self.bytes += size
        if self.total_bytes is not None:
            self.total_bytes += size
        self._cache._grew(self, size)

    def _trim(self, max_bytes: int) -> int:
        """Drop the oldest entries until the window holds at most ``max_bytes``; returns the
        bytes dropped. Lists are replaced, never cut in place: a reader may hold the old ones."""
        if self.bytes <= max_bytes:
            return 0
        sizes = self.sizes
        drop, freed = 0, 0
        while drop < len(sizes) and self.bytes - freed > max_bytes:
            freed += sizes[drop]
            drop += 1
        self.entries = self.entries[drop:]
        self.messages = self.messages[drop:]
        self.sizes = sizes[drop:]
        self.base += drop
        self.bytes -= freed
        return freed


class Transcripts:
    """Every worker's :class:`TranscriptWindow`, with the runtime-wide byte accounting."""

    def __init__(self, store: Store, *, window_bytes: int, cache_bytes: int) -> None:
        self._store = store
        self._window_bytes = max(0, window_bytes)
        self._cache_bytes = max(0, cache_bytes)
        self._lru: OrderedDict[str, TranscriptWindow] = OrderedDict()
        self.bytes = 0  # held by all windows
        self._loaded: dict[str, int] = {}  # worker_id -> bytes of a history read for its run

    @property
    def loaded_bytes(self) -> int:
        return sum(self._loaded.values())

    def open(self, worker_id: str, length: int = 0) -> TranscriptWindow:
        window = TranscriptWindow(self, worker_id, length)
        self._lru[worker_id] = window
        return window

    def reset(self) -> None:
        """Forget every window (the Runtime rebuilds its state from the store)."""
        self._lru = OrderedDict()
        self.bytes = 0
        self._loaded = {}

    def drop(self, window: TranscriptWindow) -> None:
        """The worker is gone: forget its window."""
        if self._lru.get(window.worker_id) is window:
            del self._lru[window.worker_id]
        self.bytes -= window.bytes
        window._trim(0)
        self._loaded.pop(window.worker_id, None)

    def evict_all(self) -> None:
        """Empty every window (memory pressure): the next run of each reads from the store."""
        for window in self._lru.values():
            self.bytes -= window._trim(0)

    def _grew(self, window: TranscriptWindow, size: int) -> None:
        self.bytes += size
        lru = self._lru
        if lru.get(window.worker_id) is window:
            lru.move_to_end(window.worker_id)
        if window.bytes > self._window_bytes:
            self.bytes -= window._trim(self._window_bytes)
        if self.bytes <= self._cache_bytes:
            return  # the hot path
        turns = len(lru)  # each window is looked at once at most
        while self.bytes > self._cache_bytes and turns > 0:
            turns -= 1
            wid, oldest = next(iter(lru.items()))
            if oldest is not window:
                self.bytes -= oldest._trim(0)
            lru.move_to_end(wid)  # emptied, it costs nothing: the next in line goes next
        if self.bytes > self._cache_bytes:  # this window alone is over the cache bound
            self.bytes -= window._trim(0)

    async def history(
        self, window: TranscriptWindow, wait_committed: WaitCommitted
    ) -> list[engine.Message]:
        """The whole transcript's messages, for a run of this worker."""
        if window.base == 0:
            return window.messages  # the hot path: no await, no copy
        base, tail, tail_entries = window.base, list(window.messages), list(window.entries)
        tail_sizes, tail_bytes = list(window.sizes), window.bytes
        older = await self._read(window.worker_id, 0, base, wait_committed)
        if window.length != base + len(tail):
            # Entries were appended meanwhile (a run of its own writes them: not expected);
            # never hand the model a history with a hole.
            raise engine.ConfigurationError("the transcript changed while it was being read")
        total = window.total_bytes
        if total is None:  # once after a restart; then kept up to date by append
            total = window.total_bytes = sum(map(entry_bytes, older)) + tail_bytes
        loaded = total - tail_bytes
        history = [e.message for e in older]
        history += tail
        if window.base == base and total <= self._window_bytes:
            # It fits again (the window was emptied by pressure, or after a restart): adopt it.
            sizes = [entry_bytes(e) for e in older]
            loaded = sum(sizes)
            window.entries = older + tail_entries
            window.messages = list(history)
            window.sizes = sizes + tail_sizes
            window.base = 0
            window.bytes += loaded
            self._grew(window, loaded)
        else:
            self._loaded[window.worker_id] = loaded
        return history

    def release(self, worker_id: str) -> None:
        """The run that loaded this worker's history has finished."""
        self._loaded.pop(worker_id, None)

    async def page(
        self, window: TranscriptWindow, start: int, size: int, wait_committed: WaitCommitted
    ) -> list[TranscriptEntry]:
        """Up to ``size`` entries from index ``start``: from the window, else from the store."""
        base, tail = window.base, window.entries
        if start >= base:
            return tail[start - base : start - base + size]
        n = min(size, base - start)
        older = await self._read(window.worker_id, start, n, wait_committed)
        if len(older) == n and n < size:
            older += tail[: size - n]
        return older

    async def _read(
        self, worker_id: str, start: int, count: int, wait_committed: WaitCommitted
    ) -> list[TranscriptEntry]:
        await wait_committed()
        entries = await self._store.read_transcript(worker_id, start, count)
        if len(entries) != count or (entries and entries[0].index != start):
            raise errors.StoreFailure(
                f"the store returned {len(entries)} of transcript entries {start}.."
                f"{start + count - 1} of worker {worker_id}"
            )
        return entries
