"""Fewer, fuller EventBatch messages: wait a moment for the events a run is still producing.

A run produces its events one loop step apart (each stream chunk is its own step). With the
memory store each is published at once, so a batched subscriber woke per event and sent a
10-word echo run in ~4.8 messages (measured; SQLite's group commit gave ~1.5). Each stream
message costs gRPC far more CPU than an event costs us, so before taking a batch the stream
waits while events keep arriving: it stops once ``IDLE_STEPS`` loop steps in a row brought
nothing new, when the batch is full, or after ``MAX_WAIT`` — so an event is never held longer
than that, and a lone event for two loop steps only.

Two quiet steps, not one: a run's task takes one step to start (its history, the provider's
request) before its first delta, so with one the events of ``SendInput`` went out alone and a
run took two messages where one does (measured: 2.0 -> 1.0 messages per 2-word run).

One callback per loop step checks every gathering subscription (:class:`Coalescer`), instead of
each stream waking every step to look at its own buffer: with 16 runs streaming at once that
was 16 task wake-ups a step, ~12 per run, most of them finding the batch not ready. Now a
stream wakes twice per batch: for its first event, and when the batch is ready.

``MAX_WAIT`` bounds the hold in time. It was 1 ms: under load a loop step takes longer (16
concurrent runs: 1-3 ms), so that bound cut a 10-word run into ~3.4 messages exactly when the
CPU was scarcest; 10 ms keeps it at 1.1-1.6 (measured: 5 ms gave 2.4). It only matters for a
producer that brings an event every loop step — a real model's tokens arrive milliseconds apart,
with quiet steps between them that end the wait first — and it stays below one display frame.

Both streams wait: SubscribeEventBatches sends what it gathered as one message, SubscribeEvents
as one message per event, written back to back (a message written while the run is still
producing cost the stream and its client a wake-up each; see _servicers).
"""

from __future__ import annotations

import asyncio
import weakref

from runtime_server.runtime import Subscription

MAX_WAIT = 0.010  # seconds an event may wait for company
IDLE_STEPS = 2  # loop steps in a row without a new event that end the wait


class _Gathering:
    __slots__ = ("deadline", "done", "idle", "max_events", "seen", "sub")

    def __init__(
        self, sub: Subscription, max_events: int, deadline: float, done: asyncio.Future[None]
    ) -> None:
        self.sub = sub
        self.max_events = max_events
        self.deadline = deadline
        self.done = done
        self.seen = sub.buffered
        self.idle = 0


class Coalescer:
    """The subscriptions of one event loop that are gathering a batch, and the one callback per
    loop step that tells each when its batch is ready (see the module docstring)."""

    # (no reference to its loop: it is the value of a weak mapping keyed by that loop)
    __slots__ = ("_gathering", "_scheduled")

    def __init__(self) -> None:
        self._gathering: list[_Gathering] = []
        self._scheduled = False

    async def gather(self, sub: Subscription, max_events: int) -> None:
        if sub.buffered >= max_events:
            return
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        self._gathering.append(_Gathering(sub, max_events, loop.time() + MAX_WAIT, done))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._tick)
        await done  # (cancelled: the next tick drops it)

    def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        keep: list[_Gathering] = []
        for g in self._gathering:
            done = g.done
            if done.done():  # its stream was cancelled
                continue
            sub = g.sub
            n = sub.buffered
            if n == g.seen:
                g.idle += 1
                ready = g.idle >= IDLE_STEPS
            else:
                g.seen = n
                g.idle = 0
                ready = n >= g.max_events
            if ready or sub.closed or now >= g.deadline:
                done.set_result(None)
            else:
                keep.append(g)
        self._gathering = keep
        if keep:
            loop.call_soon(self._tick)
        else:
            self._scheduled = False


_coalescers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Coalescer] = (
    weakref.WeakKeyDictionary()
)


async def gather_more(sub: Subscription, max_events: int) -> None:
    """Return once ``sub``'s buffer stopped growing for ``IDLE_STEPS`` loop steps, holds
    ``max_events``, or ``MAX_WAIT`` passed (see the module docstring)."""
    loop = asyncio.get_running_loop()
    coalescer = _coalescers.get(loop)
    if coalescer is None:
        coalescer = _coalescers[loop] = Coalescer()
    await coalescer.gather(sub, max_events)
