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

Trimming a full window moves a start offset and compacts its lists only once in a while, so an
append costs O(1) amortized whatever the window's size (see :class:`TranscriptWindow`); it used
to copy the window's three lists on every append once the window was full.

Interface kept list-like where the Runtime used a list: ``len(window)`` is the transcript's length
and ``window.append(entry)`` adds the next entry.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import overload

import engine
from runtime_server import errors
from runtime_server.model import TranscriptEntry
from runtime_server.store import Store, entry_bytes

WaitCommitted = Callable[[], Awaitable[None]]


class TranscriptWindow:
    """One worker's transcript as the Runtime keeps it (see the module docstring).

    ``entries``, ``messages`` and ``sizes`` are parallel lists whose items from index ``dead``
    on are the window: the entry at absolute index ``base`` is ``entries[dead]``
    (:attr:`origin` is the absolute index of ``entries[0]``). Trimming only moves ``dead``
    forward; the lists are compacted (replaced by copies of their live part) once the trimmed
    prefix reaches a quarter of the window, by count or by bytes. So an append to a full window
    costs O(1) amortized (at most 4 element copies per trimmed entry) instead of a copy of the
    whole window, and the trimmed prefix holds at most a quarter more than the window's count
    (plus the one entry that tipped it). The lists are never cut in place: a reader that holds
    one across an await keeps what it saw (they only grow at the end).
    """

    __slots__ = (
        "_cache",
        "base",
        "bytes",
        "context",
        "dead",
        "dead_bytes",
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
        self.base = length  # absolute index of the window's first entry; 0 = covers everything
        self.entries: list[TranscriptEntry] = []
        self.messages: list[engine.Message] = []  # parallel to entries: the engine's history
        # Parallel to entries: each one's size as counted when it came in. Never measured again:
        # a string grows when CPython caches its UTF-8 form, and accounting must not drift.
        self.sizes: list[int] = []
        self.dead = 0  # items at the front of the lists that were trimmed (not in the window)
        self.dead_bytes = 0  # their sizes (not counted in ``bytes``)
        self.bytes = 0  # of the entries in the window
        # Of the whole transcript, kept up to date once known (not after a restart until the
        # first full read): a history's size without summing it again at every run.
        self.total_bytes: int | None = 0 if length == 0 else None
        # The context policy's running fit over this transcript (see runtime._context).
        self.context: object = None

    def __len__(self) -> int:
        return self.length

    @property
    def origin(self) -> int:
        """The absolute index of ``entries[0]`` (trimmed or not)."""
        return self.base - self.dead

    def live_messages(self) -> Sequence[engine.Message]:
        """The window's messages (from ``base``), without copying them."""
        return self.messages if not self.dead else _Tail(self.messages, self.dead)

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

    def replace(
        self,
        entries: list[TranscriptEntry],
        messages: list[engine.Message],
        sizes: list[int],
        base: int,
    ) -> None:
        """Make the window these (new) lists, all live, ``entries[0]`` at absolute ``base``;
        the caller accounts for the change in ``bytes``."""
        self.entries, self.messages, self.sizes = entries, messages, sizes
        self.base = base
        self.dead = self.dead_bytes = 0

    def _trim(self, max_bytes: int) -> int:
        """Drop the oldest entries until the window holds at most ``max_bytes``; returns the
        bytes dropped (see the class docstring for how)."""
        over = self.bytes - max_bytes
        if over <= 0:
            return 0
        sizes, dead = self.sizes, self.dead
        end, freed = len(sizes), 0
        while dead < end and freed < over:
            freed += sizes[dead]
            dead += 1
        self.base += dead - self.dead
        self.bytes -= freed
        self.dead_bytes += freed
        self.dead = dead
        if dead * 4 >= end - dead or self.dead_bytes * 4 >= self.bytes:
            # Compact: new lists (a reader may hold the old ones), O(live) once per quarter.
            self.replace(self.entries[dead:], self.messages[dead:], sizes[dead:], self.base)
        return freed


class _Tail(Sequence[engine.Message]):
    """``items[skip:]`` without the copy: a window's messages past its trimmed prefix, for a
    reader that looks at a few of them (the context policy's settling) and copies what it
    sends."""

    __slots__ = ("_items", "_skip")

    def __init__(self, items: list[engine.Message], skip: int) -> None:
        self._items = items
        self._skip = skip

    def __len__(self) -> int:
        return len(self._items) - self._skip

    @overload
    def __getitem__(self, index: int) -> engine.Message: ...

    @overload
    def __getitem__(self, index: slice) -> list[engine.Message]: ...

    def __getitem__(self, index: int | slice) -> engine.Message | list[engine.Message]:
        if isinstance(index, slice):
            start, stop, step = index.indices(len(self))
            return self._items[start + self._skip : stop + self._skip : step]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("window index out of range")
        return self._items[index + self._skip]


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
        base, dead, tail_bytes = window.base, window.dead, window.bytes
        tail, tail_entries = window.messages[dead:], window.entries[dead:]
        tail_sizes = window.sizes[dead:]
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
            window.replace(older + tail_entries, list(history), sizes + tail_sizes, 0)
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
        # The lists only grow at their end (see TranscriptWindow): what is held here stays
        # what it was across the await.
        base, dead, held = window.base, window.dead, window.entries
        if start >= base:
            first = start - base + dead
            return held[first : first + size]
        n = min(size, base - start)
        older = await self._read(window.worker_id, start, n, wait_committed)
        if len(older) == n and n < size:
            older += held[dead : dead + size - n]
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
