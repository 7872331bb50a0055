"""The Runtime-wide event log and its subscribers.

``append`` assigns the next seq and hands the event to the store; the store reports commits and
only then are events *published*: to subscribers, to ListEvents (which reads the store) and to
acknowledgement waiters. With the memory store this all happens inside ``append``.

Reads of the Runtime's memory answer only what is committed (runtime._settle): the log records,
per worker, the seq of the last batch appended for it (``unsettled``), so a read of one worker
waits for that seq only, and a read of the whole Runtime for the newest assigned seq
(``unsettled_any``); with nothing pending both answer 0 at once.

When the store reports a failure, every batch not yet committed was discarded: ``fail`` drops the
pending events (never published), rewinds the next seq to the one after the committed seq (so no
hole is left and no published seq is reused), and fails every commit waiter with the store's
error. Until ``resume``, ``append`` writes nothing (the Runtime is rebuilding its state from the
store) and waiting for anything not yet committed raises at once.

Subscribers get bounded buffers. Publishing never waits for a subscriber: one whose buffer is
full is cut (it sees :class:`SubscriberLagging` carrying its last delivered seq, and resumes from
there). A subscription first replays from the store and joins the live fan-out in the same event
loop step in which it has caught up with the committed seq — so there is no gap and no duplicate
between replay and tail.

Shutdown (:meth:`EventLog.close_all`, after the last events are committed and published) ends
every subscription *after* it has handed over what it holds: its buffer is in memory, so the
consumer can still take it while the store closes. :meth:`EventLog.stop_reads` then refuses new
store reads (``RuntimeDraining``, never a closed store's error) and waits for the reads in flight,
so nothing touches the store once it is closed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from runtime_server.errors import (
    CursorAhead,
    CursorExpired,
    RuntimeDraining,
    StoreFailure,
    SubscriberLagging,
)
from runtime_server.model import Event, Payload, now
from runtime_server.runtime import _transcript_seq
from runtime_server.store import Mutation, Store

if TYPE_CHECKING:
    from runtime_server.runtime._observer import RuntimeObserver


class EventLog:
    def __init__(self, store: Store, *, last_seq: int, buffer_limit: int) -> None:
        self._store = store
        self._next_seq = last_seq + 1
        # the newest seq the store has reported committed (a plain attribute, not a property:
        # the hot reads compare against it, see runtime._settle)
        self.committed_seq = last_seq
        self._pending: deque[Event] = deque()  # appended, not yet committed
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._buffer_limit = buffer_limit
        self._all: set[Subscription] = set()  # whole-runtime subscribers
        self._by_worker: dict[str, set[Subscription]] = {}
        self._failure: StoreFailure | None = None
        # every subscription not yet ended (replaying ones too, which are not in the fan-out)
        self._open: set[Subscription] = set()
        self._closing = False  # close_all ran: no new subscriptions
        self._store_closed = False  # stop_reads ran: no more store reads
        self._reads = 0  # store reads in flight
        self._reads_done: asyncio.Future[None] | None = None
        # Operators' counters (read at scrape time; see _observer): events committed is the
        # committed seq minus this, so the event path pays nothing for it.
        self.start_seq = last_seq
        # worker_id -> seq of its newest transcript entry committed by this process (one int per
        # worker that ran here): GetTranscript's resume cursor (runtime._transcript_seq)
        self.newest_entry_seq: dict[str, int] = {}
        # worker_id -> seq of the last batch appended for it (its state changes travel in
        # batches; the streamed deltas of ``append_one`` change no record): a read of that worker
        # answers once it is committed (runtime._settle). One int per worker, dropped with it.
        self.changed_seq: dict[str, int] = {}
        self.cuts_lagging = 0
        self.cuts_shutdown = 0
        self.observer: RuntimeObserver | None = None  # told once per commit report
        # While a run's task step runs (runtime._steps), its batches collect here and go to the
        # store as one when the step ends (None: not holding, every append writes at once).
        self._held: list[Event] | None = None
        self._held_mutations: list[Mutation] = []
        store.set_commit_listener(self._on_commit)

    @property
    def last_assigned_seq(self) -> int:
        return self._next_seq - 1

    @property
    def subscriber_count(self) -> int:
        return len(self._all) + sum(len(s) for s in self._by_worker.values())

    def append(
        self,
        worker_id: str,
        run_id: str,
        payloads: Sequence[Payload],
        mutations: Sequence[Mutation] = (),
    ) -> list[Event]:
        """Assign seqs to ``payloads`` and write them (with ``mutations``) as one batch."""
        t = now()
        seq = self._next_seq
        events = [Event(seq + i, t, worker_id, run_id, p) for i, p in enumerate(payloads)]
        if self._failure is not None:
            return events  # not written, seqs not taken: waiting on them raises
        self._next_seq = seq + len(events)
        if worker_id:
            self.changed_seq[worker_id] = seq + len(events) - 1
        _transcript_seq.stamp(events, self.newest_entry_seq)
        self._pending.extend(events)
        held = self._held
        if held is None:
            self._store.write(events, mutations)
        else:
            held.extend(events)
            self._held_mutations.extend(mutations)
        return events

    def append_one(self, worker_id: str, run_id: str, payload: Payload) -> Event:
        """The hot path: one event, no mutations."""
        event = Event(self._next_seq, now(), worker_id, run_id, payload)
        if self._failure is not None:
            return event
        self._next_seq += 1
        self._pending.append(event)
        held = self._held
        if held is None:
            self._store.write((event,))
        else:
            held.append(event)
        return event

    def hold(self) -> None:
        """Collect what is appended until :meth:`release` (one step of a run: runtime._steps)."""
        self._held = []

    def release(self) -> None:
        """Write what was held since :meth:`hold` as one batch (in seq order), stop holding;
        after a store failure it is dropped with the rest (see :meth:`fail`), never written."""
        held = self._held
        self._held = None
        mutations = self._held_mutations
        if held is not None and (held or mutations):
            self._held_mutations = []
            if self._failure is None:
                self._store.write(held, mutations)

    def unsettled(self, worker_id: str) -> int:
        """The seq of the last batch appended for ``worker_id`` if it is not committed yet, else
        0: what a read of that worker waits for (runtime._settle). Two lookups, no allocation."""
        seq = self.changed_seq.get(worker_id, 0)
        return seq if seq > self.committed_seq else 0

    def unsettled_any(self) -> int:
        """The newest assigned seq if it is not committed yet, else 0: what a read of the whole
        Runtime waits for."""
        seq = self._next_seq - 1
        return seq if seq > self.committed_seq else 0

    def forget_worker(self, worker_id: str, seq: int) -> None:
        """A deleted worker's bookkeeping goes once its delete (batch ``seq``) is committed,
        unless a worker created again under its id has appended since."""
        if self.changed_seq.get(worker_id) == seq:
            del self.changed_seq[worker_id]
        if self.newest_entry_seq.get(worker_id, seq + 1) <= seq:
            del self.newest_entry_seq[worker_id]

    async def wait_committed(self, seq: int) -> None:
        if seq <= self.committed_seq:
            return
        if self._failure is not None:
            raise self._failure.again()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((seq, fut))
        await fut

    @property
    def failure(self) -> StoreFailure | None:
        return self._failure

    def fail(self, error: StoreFailure) -> None:
        """The store discarded everything after the committed seq (see the module docstring)."""
        self._failure = error
        self._pending.clear()
        # memory goes back to what is committed (see _storewatch): nothing is left to wait for
        self.changed_seq.clear()
        self._next_seq = self.committed_seq + 1
        waiters, self._waiters = self._waiters, []
        for _, fut in waiters:
            if not fut.done():
                fut.set_exception(error.again())

    def resume(self) -> None:
        self._failure = None

    def _on_commit(self, seq: int) -> None:
        pending = self._pending
        observer = self.observer
        if observer is not None and pending and pending[0].seq <= seq:
            head = pending[0]
            observer.commit(now() - head.time, min(seq, pending[-1].seq) - head.seq + 1)
        while pending and pending[0].seq <= seq:
            self._publish(pending.popleft())
        self.committed_seq = max(self.committed_seq, seq)
        if self._waiters:
            keep: list[tuple[int, asyncio.Future[None]]] = []
            for want, fut in self._waiters:
                if want <= seq:
                    if not fut.done():
                        fut.set_result(None)
                else:
                    keep.append((want, fut))
            self._waiters = keep

    def _publish(self, event: Event) -> None:
        # A subscriber cut for lagging must leave its set only after the loop over that set.
        cut: list[Subscription] | None = None
        for sub in self._all:
            if not sub._offer(event):
                cut = [sub] if cut is None else [*cut, sub]
        subs = self._by_worker.get(event.worker_id)
        if subs:
            for sub in subs:
                if not sub._offer(event):
                    cut = [sub] if cut is None else [*cut, sub]
        if cut is not None:
            self.cuts_lagging += len(cut)
            for sub in cut:
                self._leave(sub)

    def check_cursor(self, after_seq: int) -> None:
        """Raise if ``after_seq`` is ahead of the log or older than retention (0 is always ok)."""
        if after_seq > self.committed_seq:
            raise CursorAhead(after_seq, self.committed_seq)
        oldest = self._store.oldest_seq()
        if after_seq and oldest and after_seq < oldest - 1:
            raise CursorExpired(after_seq, oldest)
        if after_seq and not oldest and after_seq < self.committed_seq:
            # everything up to committed_seq was trimmed
            raise CursorExpired(after_seq, self.committed_seq + 1)

    async def read(self, after_seq: int, limit: int, worker_id: str = "") -> list[Event]:
        if self._store_closed:
            raise RuntimeDraining()
        self.check_cursor(after_seq)
        self._reads += 1
        try:
            events = await self._store.read_events(after_seq, limit, worker_id)
        finally:
            self._reads -= 1
            done = self._reads_done
            if not self._reads and done is not None and not done.done():
                done.set_result(None)
        # Retention may have trimmed past the cursor while the read ran: then the result could
        # silently start later than after_seq + 1. Check again; never skip without an error.
        self.check_cursor(after_seq)
        # A durable store may already hold events whose commit report has not reached us yet;
        # never show those before they are published.
        committed = self.committed_seq
        if events and events[-1].seq > committed:
            events = [e for e in events if e.seq <= committed]
        return events

    def subscribe(
        self,
        *,
        after_seq: int = 0,
        worker_id: str = "",
        from_now: bool = False,
        kinds: frozenset[type] | None = None,
    ) -> Subscription:
        if self._closing:
            # the caller's own cursor is its resume point (a from_now caller has none yet)
            raise RuntimeDraining(None if from_now else after_seq)
        if not from_now:
            self.check_cursor(after_seq)
        start = self.committed_seq if from_now else after_seq
        sub = Subscription(self, start, worker_id, self._buffer_limit, kinds)
        self._open.add(sub)
        if start >= self.committed_seq:
            sub._go_live()  # nothing to replay: join now, synchronously, so nothing is missed
        return sub

    def _join(self, sub: Subscription) -> None:
        if sub.worker_id:
            self._by_worker.setdefault(sub.worker_id, set()).add(sub)
        else:
            self._all.add(sub)

    def _leave(self, sub: Subscription) -> None:
        if sub.worker_id:
            subs = self._by_worker.get(sub.worker_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._by_worker[sub.worker_id]
        else:
            self._all.discard(sub)

    def close_all(self) -> None:
        """End every subscription (shutdown): each first hands over the events it holds, then
        ends (``next`` returns None, ``closed`` is true); new subscriptions are refused with
        RuntimeDraining. Call it after the final events are committed, so they are delivered."""
        self._closing = True
        for sub in list(self._open):
            self.cuts_shutdown += not sub.closed
            sub.close()

    async def stop_reads(self) -> None:
        """Before the store closes: refuse new reads (RuntimeDraining) and wait for the reads in
        flight (a replaying subscription, a ListEvents) to finish."""
        self._store_closed = True
        if self._reads:
            self._reads_done = asyncio.get_running_loop().create_future()
            await self._reads_done

    @property
    def store_closed(self) -> bool:
        return self._store_closed


class Subscription:
    """Events with seq > the cursor, replayed then live. Iterate with ``next(timeout)`` or
    ``async for``. Ends (StopAsyncIteration / None) when closed; raises
    :class:`SubscriberLagging` if it fell more than its buffer behind."""

    _REPLAY_PAGE = 512

    def __init__(
        self,
        log: EventLog,
        after_seq: int,
        worker_id: str,
        limit: int,
        kinds: frozenset[type] | None = None,
    ) -> None:
        self._log = log
        self.worker_id = worker_id
        # payload classes kept (None = all): filtered out on the way in, so they never take
        # buffer room (runtime._payload_filter)
        self._kinds = kinds
        self.last_seq = after_seq
        self._scanned = after_seq
        self._limit = limit
        self._buffer: deque[Event] = deque()
        self._waiter: asyncio.Future[bool] | None = None  # True: woken, False: timed out
        self._live = False
        self._closed = False
        self._lagging = False

    # called by the log, synchronously, for every published event that matches; False = cut
    # (the log removes it from the fan-out after its loop: never while iterating the set)
    def _offer(self, event: Event) -> bool:
        kinds = self._kinds
        if kinds is not None and event.payload.__class__ not in kinds:
            return True
        kept = len(self._buffer) < self._limit
        if kept:
            self._buffer.append(event)
        else:
            self._lagging = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(True)
        return kept

    def _go_live(self) -> None:
        if self._closed:  # ended (shutdown, or its consumer) while its replay read ran
            return
        self._log._join(self)
        self._live = True

    async def _replay(self) -> None:
        """Read one page from the store; join the live fan-out once caught up.

        ``_scanned`` is how far the store has been read (for a worker filter, further than the last
        event delivered). Events committed before a read starts are in its result, so after a short
        page the scan covers everything up to the committed seq taken *before* the read. If nothing
        was committed while the read ran, joining now — in this loop step — leaves no gap; anything
        already delivered that arrives again live is dropped by seq.
        """
        log = self._log
        horizon = log.committed_seq
        page = min(self._REPLAY_PAGE, self._limit)
        events = await log.read(self._scanned, page, self.worker_id)
        if events:
            kinds = self._kinds
            self._buffer.extend(
                e
                for e in events
                if e.seq > self.last_seq and (kinds is None or e.payload.__class__ in kinds)
            )
        if len(events) >= page:
            self._scanned = events[-1].seq
            return
        self._scanned = max(horizon, events[-1].seq if events else 0, self._scanned)
        if log.committed_seq <= self._scanned:
            self._go_live()

    async def next(self, timeout: float | None = None) -> Event | None:  # noqa: ASYNC109
        # (a timeout parameter, not asyncio.timeout() around the call: on timeout the waiter is
        # dropped cleanly and None is returned, which the gRPC layer turns into a heartbeat)
        """The next event; ``None`` on timeout or when closed and drained."""
        while True:
            buffer = self._buffer
            while buffer:
                event = buffer.popleft()
                if event.seq > self.last_seq:
                    self.last_seq = event.seq
                    return event
            if self._lagging:
                self.close()
                raise SubscriberLagging(self.last_seq, self._limit)
            if self._closed:
                return None
            if not self._live:
                await self._replay()
                continue
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # The timeout is a timer that resolves the waiter with False (an event or close
            # resolves it with True): no cancellation is involved, so none can be swallowed or
            # raced (wait_for on Python 3.11 could swallow one), and it costs one timer handle
            # instead of asyncio.timeout's context manager around every wait.
            timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
            try:
                if not await waiter:
                    return None
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()

    def drain(
        self,
        max_events: int,
        *,
        weigh: Callable[[Event], int] | None = None,
        max_weight: int = 0,
    ) -> list[Event]:
        """Up to ``max_events`` events already buffered, taken now, without waiting (and without
        replaying or raising: the next :meth:`next` does that). With ``weigh``, stop before an
        event that would take the total weight of the taken events past ``max_weight``."""
        out: list[Event] = []
        buffer = self._buffer
        weight = 0
        while buffer and len(out) < max_events:
            event = buffer[0]
            if event.seq <= self.last_seq:  # already delivered (replay then live): drop it
                buffer.popleft()
                continue
            if weigh is not None:
                weight += weigh(event)
                if weight > max_weight:
                    break
            buffer.popleft()
            self.last_seq = event.seq
            out.append(event)
        return out

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def buffered(self) -> int:
        """Events waiting in the buffer (delivered ones dropped on take not yet subtracted)."""
        return len(self._buffer)

    def close(self) -> None:
        """End it: leave the fan-out and wake the reader, which still drains its buffer (the
        consumer closing it, or the log at shutdown). Safe to call again."""
        if not self._closed:
            self._closed = True
            self._log._leave(self)
            self._log._open.discard(self)
            waiter = self._waiter
            if waiter is not None and not waiter.done():
                waiter.set_result(True)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.next()
        if event is None:
            raise StopAsyncIteration
        return event


def _expire(waiter: asyncio.Future[bool]) -> None:
    """A :meth:`Subscription.next` wait timed out (unless it was woken first)."""
    if not waiter.done():
        waiter.set_result(False)
