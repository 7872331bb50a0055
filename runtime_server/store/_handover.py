"""The loop side of the SQLite store's write queue: batches are handed to the writer thread once
the event loop's burst of writes is over, not one by one.

Why: a transaction costs the writer ~80 µs of fixed work (locks, WAL frames, the counters, the
seq mark) besides its rows, and every hand-off can wake the writer thread, whose Python work then
competes with the loop for the GIL while the loop is still producing. A run writes about 14
batches (its start, one per streamed chunk, its end), one loop step apart; handed over one by one,
a sequential run took ~2 transactions and as many writer wake-ups and loop reports (the writer
started on the start batch while the chunks were still coming).

How: ``write()`` holds the batch and, for the first one held, schedules a check for the next loop
step. The check hands everything held over as *one* queue item once ``IDLE_STEPS`` loop steps in
a row went by without a new write, or once the first held batch has waited ``MAX_HOLD`` (a loop
that writes on every step — many concurrent runs — still hands over at least that often). So a
lone write waits one loop step (microseconds when the loop has nothing else to do), a burst
waits until it ends, and nothing waits longer than ``MAX_HOLD`` plus one step.

Nothing about durability changes: a batch is reported committed (and its events published, its
acknowledgement sent) only after the writer committed it, as before — holding it only moves when
that commit happens. ``close()`` hands over what is held before the writer's stop marker; a
failure report drops what is held (the writer discards every batch not yet reported anyway, and
``resume()`` counts them settled).
"""

from __future__ import annotations

import asyncio
import queue
from typing import Any

# The longest a written batch is held before it goes to the writer (seconds).
MAX_HOLD = 0.002
# Loop steps in a row without a new write that end the burst. One: more would let the start of a
# CPU-bound run (the echo provider's, which writes a chunk every step) join the run's chunks in
# one transaction (measured: 1.0 instead of ~1.5 transactions a sequential echo run), but then
# SendInput's acknowledgement waits for the run's burst — and with it when anything first encodes
# the input text (CPython caches its UTF-8 form in the string then, which the transcript window's
# accounting sees: tests/api/test_transcript_window.py). An acknowledgement waits one step.
IDLE_STEPS = 1


class HandOver:
    """A mixin of SqliteStore (loop side only)."""

    _loop: asyncio.AbstractEventLoop | None
    _queue: queue.SimpleQueue[Any]
    _batches_written: int

    def _init_hand_over(self) -> None:
        self._held: list[Any] = []  # batches written, not yet handed to the writer
        self._held_since = 0.0  # loop time of the first batch held
        self._held_seen = 0  # _batches_written at the last check
        self._held_idle = 0  # checks in a row that saw no new write

    def _hold(self, batch: Any) -> None:
        held = self._held
        held.append(batch)
        if len(held) == 1:
            loop = self._loop
            assert loop is not None
            self._held_since = loop.time()
            self._held_seen = self._batches_written
            self._held_idle = 0
            loop.call_soon(self._check_held)

    def _check_held(self) -> None:
        if not self._held:
            return  # handed over (close) or dropped (failure) meanwhile
        loop = self._loop
        assert loop is not None
        if self._batches_written != self._held_seen:
            self._held_seen = self._batches_written  # still writing
            self._held_idle = 0
        else:
            self._held_idle += 1
        if self._held_idle < IDLE_STEPS and loop.time() - self._held_since < MAX_HOLD:
            loop.call_soon(self._check_held)  # look again next step
            return
        self._release_held()

    def _release_held(self) -> None:
        """Hand everything held to the writer now, as one queue item."""
        if self._held:
            held, self._held = self._held, []
            self._queue.put(held)

    def _drop_held(self) -> None:
        self._held = []
