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
lone write waits ``IDLE_STEPS`` loop steps (microseconds when the loop has nothing else to do), a
burst waits until it ends, and nothing waits longer than ``MAX_HOLD`` plus one step.

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
# Loop steps in a row without a new write that end the burst. Three: a run's start (its
# acknowledgement's batch) and its first streamed chunk are one or two steps apart (the run task
# starts, then the provider), so with one step a sequential echo run took two transactions — two
# hand-offs and wake-ups of the writer, two reports to the loop, and the pages both rewrite
# (run, worker, transcript, the event chunks' tails) twice. With three the start joins the
# run's burst: one transaction a run (in-process: 439 → 402 transactions for 400 runs; served,
# the writer's context switches per run 8-10 → 2). What it costs: SendInput's acknowledgement
# waits for that burst when the provider produces without waiting (the echo provider; at most
# MAX_HOLD) — measured, its median moved within the noise (1.71-1.82 → 1.82-1.90 ms served at
# c=1, load 3-4) while the run's end arrived sooner (2.77-2.89 → 2.35 ms); a provider that waits
# on the network ends the burst at its first wait, as before.
IDLE_STEPS = 3


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
        self._max_hold = MAX_HOLD  # (an attribute: tests lift it)

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
        if self._held_idle < IDLE_STEPS and loop.time() - self._held_since < self._max_hold:
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
