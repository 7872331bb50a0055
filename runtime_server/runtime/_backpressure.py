"""Backpressure from the store's write queue to the producers of run events.

A run's events come from its provider stream, and ``EventLog.append_one`` hands each one to the
store without waiting (the engine's ``emit`` is synchronous, and a request must never block on
the disk). The SQLite store commits on its writer thread; when producers outrun it, the queue
between them grew without bound — and with it the time from an event's write to its commit
report, i.e. to its delivery (1.4 s p99 at saturation, measured).

The fix holds producers where they can wait: a run's provider stream. Before each stream event
is passed on to the engine, :class:`BackpressuredProvider` awaits the store's ``write_wait()``
(a future while the store's write backlog is at its bound ``store_write_backlog_events``, else
``None`` — the common case costs one call). So the backlog is at most the bound plus one stream
event's writes per concurrently streaming run, and every write is still accepted: requests
(CreateWorker, SendInput, ...) are never refused or delayed by it (each already waits for its
own commit).

A store without ``write_wait`` (the memory store commits inside ``write()``) needs no wrapper:
:func:`backpressured` returns the provider unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import engine

WriteWait = Callable[[], "asyncio.Future[None] | None"]


class BackpressuredProvider:
    """A provider whose stream pauses while the store's write backlog is full."""

    def __init__(self, inner: engine.Provider, write_wait: WriteWait) -> None:
        self._inner = inner
        self._write_wait = write_wait

    @property
    def kind(self) -> str:
        return self._inner.kind

    async def stream(self, request: engine.ModelRequest) -> AsyncIterator[engine.StreamEvent]:
        write_wait = self._write_wait
        inner = self._inner.stream(request)
        try:
            async for event in inner:
                wait = write_wait()
                if wait is not None:
                    await wait
                yield event
        finally:
            # close the provider's HTTP stream promptly (cancel, error or early exit)
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()

    async def aclose(self) -> None:
        await self._inner.aclose()


def backpressured(provider: engine.Provider, store: object) -> engine.Provider:
    """``provider`` throttled by ``store.write_wait`` when the store has one."""
    write_wait: WriteWait | None = getattr(store, "write_wait", None)
    if write_wait is None:
        return provider
    return BackpressuredProvider(provider, write_wait)
