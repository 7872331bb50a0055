"""Merged subscriptions: one stream over one runtime (optionally one worker) or over all of them,
surviving each runtime's disconnects and restarts.

Each runtime's stream is read with the client's own resumption turned
off, because resuming is only safe after the registry has checked the runtime's identity again: a
feed that loses its stream waits until the runtime is routable (READY / DRAINING), asks its
GetRuntime once more, and only if the runtime_id is still the pinned one subscribes again after
the last seq it delivered — so across a restart on the same data there is no gap and no
duplicate, and a runtime that came back as another one (a wiped data dir) never gets to deliver
a single event into the old stream. A fresh runtime would also refuse the old cursor
(CURSOR_AHEAD), a second line of defence.

In-band items: every health change of a runtime in the stream is a :class:`RuntimeStateChanged`;
a cursor that aged out of retention is a :class:`CursorReset` (the consumer reloads its
snapshot; the stream goes on after the runtime's last seq). For a one-runtime stream, an identity
change ends the stream with :class:`RuntimeIdentityChanged`; in an all-runtimes stream it is
reported in-band and that runtime's feed stops (the others go on).

An all-runtimes stream runs one feed task per runtime; feeds hand items over through one queue
of ``subscription_buffer`` items, and a full queue makes them wait (their streams then back up
into the runtimes, which cut a lagging subscriber — and the feed resumes from its last seq). A
one-runtime stream (the Backend's per-worker streams, the hot path) reads its runtime inline,
without a task or a queue; its state changes are reported at the next event, heartbeat or
reconnect rather than the instant they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from runtime_client._makers import draft
from runtime_client._models import WorkerDeleted
from runtime_client._monitor import IdentityMismatch, jittered
from runtime_client._registry_types import (
    CursorReset,
    RegistryEvent,
    RegistryItem,
    RegistryOptions,
    RuntimeHealth,
    RuntimeStateChanged,
)
from runtime_client._runtime_entry import ROUTABLE, RuntimeEntry
from runtime_client.errors import (
    CursorAhead,
    CursorExpired,
    DeadlineExceeded,
    RuntimeIdentityChanged,
    RuntimeServiceError,
    StatusCode,
    SubscriberLagging,
    Unauthenticated,
    Unavailable,
)

__all__ = ["merged"]

_END = object()

# A RegistryEvent per event (the Backend's per-worker streams, the hot path) is built as the
# client's makers build the models (runtime_client._makers): a draft of its slots filled by
# attribute stores, then made a RegistryEvent, instead of the frozen dataclass __init__'s
# object.__setattr__ per field (callgrind: 4.3 K -> 1.5 K instructions an event).
_RegistryEventDraft = draft(RegistryEvent)


class _Outbox:
    """The feeds' queue, bounded for events; state changes are never dropped nor waited on."""

    def __init__(self, size: int) -> None:
        self._items: deque[object] = deque()
        self._size = size
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    async def put(self, item: object) -> None:
        while len(self._items) >= self._size:
            self._room.clear()
            await self._room.wait()
        self.put_now(item)

    def put_now(self, item: object) -> None:
        self._items.append(item)
        self._ready.set()

    async def get(self) -> object:
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        item = self._items.popleft()
        if len(self._items) < self._size:
            self._room.set()
        return item


async def _verify(entry: RuntimeEntry) -> int:
    """Ask the runtime who it is before resuming; its last seq on success."""
    info = await entry.probe.get_runtime()
    if entry.runtime_id is not None and info.runtime_id != entry.runtime_id:
        entry.actual_id = info.runtime_id
        entry.set_state(
            RuntimeHealth.IDENTITY_CHANGED,
            f"expected runtime_id {entry.runtime_id}, the address answers as {info.runtime_id}",
        )
        raise IdentityMismatch
    return info.last_seq


async def _items(
    entry: RuntimeEntry,
    options: RegistryOptions,
    *,
    worker_id: str,
    after_seq: int | None,
    payload_types: Sequence[str],
    ticks: bool,
) -> AsyncGenerator[RegistryEvent | CursorReset | None, None]:
    """One runtime's items. ``after_seq`` None: from the runtime's last seq at the time it is
    first reached. With ``ticks``, also None after every wait for a state change and for every
    heartbeat of the stream: a point where the consumer can report state changes in-band."""
    cursor = after_seq
    failures = 0
    verified = False
    while True:
        while entry.state not in ROUTABLE:
            if entry.state is RuntimeHealth.IDENTITY_CHANGED:
                raise entry.unusable()
            await entry.wait_changed()
            if ticks:
                yield None
        rid = entry.runtime_id or ""
        try:
            if not verified or cursor is None:
                last = await _verify(entry)
                verified = True
                if cursor is None:
                    cursor = last
            stream = entry.handle.subscribe(
                worker_id,
                after_seq=cursor,
                resume=False,
                include_heartbeats=ticks,
                payload_types=payload_types,
            )
            async with contextlib.aclosing(stream):
                async for event in stream:
                    if not event.seq:  # a heartbeat (asked for with ticks)
                        yield None
                        continue
                    cursor = event.seq
                    failures = 0
                    item: Any = _RegistryEventDraft()
                    item.runtime_id = rid
                    item.event = event
                    item.__class__ = RegistryEvent
                    yield item
                    if worker_id and isinstance(event.payload, WorkerDeleted):
                        return
            # the runtime ended the stream (shutdown): resume once it is verified again
            verified = False
        except IdentityMismatch:
            raise entry.unusable() from None
        except SubscriberLagging:
            continue  # we were slow; same connection, same runtime
        except CursorExpired as exc:
            last = await _verify(entry)
            yield CursorReset(rid, exc.oldest_seq, last)
            cursor = last
            continue
        except CursorAhead as exc:
            # the runtime's log is behind our cursor: another runtime, or one that lost its log
            entry.poke()
            last = await _verify(entry)
            yield CursorReset(rid, 0, last)
            cursor = min(exc.last_seq, last) if exc.last_seq else last
            continue
        except (Unavailable, DeadlineExceeded, Unauthenticated, TimeoutError):
            # cut, draining, or the token refused (AUTH_FAILED): the health loop says when the
            # runtime is usable again
            verified = False
        except RuntimeServiceError as exc:
            if exc.code is not StatusCode.CANCELLED:
                raise
            verified = False  # the channel was replaced under the stream: go on on the new one
        failures += 1
        entry.poke()
        # wait for the health loop to see the runtime go and come back, or try again after a
        # jittered backoff (the stream may have been cut while the runtime stayed up)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(jittered(options.backoff_initial_s, failures, 2.0)):
                await entry.wait_changed()
        if ticks:
            yield None


async def _single(
    entry: RuntimeEntry,
    options: RegistryOptions,
    *,
    worker_id: str,
    after_seq: int,
    payload_types: Sequence[str],
) -> AsyncGenerator[RegistryItem, None]:
    """One runtime, read inline (no task, no queue: the Backend's per-worker streams are the hot
    path). State changes are reported at the next item, heartbeat or reconnect."""
    pending: deque[RuntimeStateChanged] = deque()
    unlisten = entry.listen(pending.append)
    items = _items(
        entry,
        options,
        worker_id=worker_id,
        after_seq=after_seq,
        payload_types=payload_types,
        ticks=True,
    )
    try:
        async with contextlib.aclosing(items):
            try:
                async for item in items:
                    while pending:
                        yield pending.popleft()
                    if item is not None:
                        yield item
            except RuntimeIdentityChanged:
                while pending:
                    yield pending.popleft()
                raise
    finally:
        unlisten()


def merged(
    entries: Sequence[RuntimeEntry],
    options: RegistryOptions,
    *,
    worker_id: str,
    after_seq: int | None,
    payload_types: Sequence[str],
    single: bool,
) -> AsyncGenerator[RegistryItem, None]:
    """The merged stream over ``entries`` (see the module docstring)."""
    if single:
        [entry] = entries
        return _single(
            entry,
            options,
            worker_id=worker_id,
            after_seq=after_seq or 0,
            payload_types=payload_types,
        )
    return _multi(entries, options, worker_id=worker_id, payload_types=payload_types)


async def _multi(
    entries: Sequence[RuntimeEntry],
    options: RegistryOptions,
    *,
    worker_id: str,
    payload_types: Sequence[str],
) -> AsyncGenerator[RegistryItem, None]:
    """Every runtime, each from its last seq when first reached: one feed task per runtime."""
    out = _Outbox(options.subscription_buffer)
    running = len(entries)
    unlisten = []
    tasks: list[asyncio.Task[None]] = []

    def on_change(change: RuntimeStateChanged) -> None:
        out.put_now(change)

    async def run(entry: RuntimeEntry) -> None:
        items = _items(
            entry,
            options,
            worker_id=worker_id,
            after_seq=None,
            payload_types=payload_types,
            ticks=False,
        )
        try:
            async with contextlib.aclosing(items):
                async for item in items:
                    await out.put(item)
        except RuntimeIdentityChanged:
            pass  # reported in-band (RuntimeStateChanged); the other runtimes go on
        except asyncio.CancelledError:
            raise
        except BaseException as exc:
            out.put_now(exc)
        finally:
            out.put_now(_END)

    for entry in entries:
        unlisten.append(entry.listen(on_change))
        tasks.append(asyncio.ensure_future(run(entry)))
    try:
        while running:
            got = await out.get()
            if got is _END:
                running -= 1
            elif isinstance(got, BaseException):
                raise got
            elif isinstance(got, RegistryEvent | RuntimeStateChanged | CursorReset):
                yield got
    finally:
        for stop in unlisten:
            stop()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
