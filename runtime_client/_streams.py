"""The streaming half of :class:`~runtime_client.RuntimeClient`: ``subscribe`` and ``wait_run``,
and the reconnect :class:`Backoff` (inherited by the client from :class:`StreamCalls`).

:meth:`StreamCalls.subscribe` is the hot path: a tight read loop on the raw call, a seq check,
one dict-dispatched conversion per event, and resumption (from the last seq it yielded) after the
stream is cut for lagging, unavailability or server shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from runtime_client import _convert
from runtime_client._models import Event, Run, RunFinished, RuntimeInfo, WorkerDeleted
from runtime_client._text import check_unicode
from runtime_client.api import observation_service_pb2 as observation_pb
from runtime_client.errors import (
    CursorExpired,
    RuntimeDraining,
    RuntimeServiceError,
    SubscriberLagging,
    Unavailable,
    from_rpc_error,
)

__all__ = ["DEFAULT_BACKOFF", "Backoff", "StreamCalls"]

# Errors after which a subscription reconnects and resumes instead of raising.
_RESUMABLE = (SubscriberLagging, Unavailable, RuntimeDraining)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Bounded exponential backoff between reconnects: ``initial * multiplier**(n-1)`` capped at
    ``maximum``, minus up to ``jitter`` of it at random (so many clients cut at once by a
    restarting Runtime do not reconnect in lockstep)."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        return base * (1.0 - self.jitter * random.random())


DEFAULT_BACKOFF = Backoff()


class StreamCalls:
    """RuntimeClient's streaming methods (it provides ``_observation``, ``_metadata``,
    ``get_runtime`` and ``get_run``)."""

    _observation: Any
    _metadata: Any

    if TYPE_CHECKING:

        async def get_runtime(self) -> RuntimeInfo: ...

        async def get_run(self, run_id: str) -> Run: ...

    # a timeout parameter (not only asyncio.timeout around the call) is part of the API contract
    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        """Wait until the run is terminal and return it; ``TimeoutError`` after ``timeout``.

        Subscription-based, not polling: it reads the log's ``last_seq`` *before* reading the
        run, so if the run is still active its RunFinished must have a larger seq and the
        subscription (worker-filtered, from that seq) cannot miss it. If retention trims the log
        past that cursor first (a busy run, a small retention), it starts over from a fresh one.
        """
        async with asyncio.timeout(timeout):
            while True:
                cursor = (await self.get_runtime()).last_seq
                run = await self.get_run(run_id)
                if run.terminal:
                    return run
                events = self.subscribe(run.worker_id, after_seq=cursor)
                try:
                    async with contextlib.aclosing(events):
                        async for ev in events:
                            payload = ev.payload
                            if isinstance(payload, RunFinished) and payload.run.run_id == run_id:
                                return payload.run
                except CursorExpired:
                    continue  # the events are gone, not the run: read it again
                # the stream ended without it (the worker was deleted): ask the server
                return await self.get_run(run_id)

    async def subscribe(
        self,
        worker_id: str = "",
        after_seq: int = 0,
        from_now: bool = False,
        *,
        resume: bool = True,
        include_heartbeats: bool = False,
        max_reconnects: int | None = 10,
        backoff: Backoff = DEFAULT_BACKOFF,
        batched: bool = True,
        on_retry: Callable[[RuntimeServiceError, float], object] | None = None,
        payload_types: Sequence[str] = (),
    ) -> AsyncGenerator[Event, None]:
        """Events with seq > ``after_seq`` (0 = oldest retained; ``from_now`` = only new ones),
        replayed then live, optionally for one worker only, of ``payload_types`` kinds only.

        With ``resume`` (the default) the stream survives being cut: after SUBSCRIBER_LAGGING,
        UNAVAILABLE / RUNTIME_DRAINING, or a stream the server ended (shutdown), it reconnects
        with ``after_seq`` = the last seq it yielded, so nothing is duplicated or skipped. Waits
        follow ``backoff`` (a lagging cut after progress reconnects at once); ``max_reconnects``
        consecutive failures without receiving anything raise the last error (None = never give
        up). Every other error is raised: CursorExpired (the cursor aged out of retention),
        CursorAhead (the Runtime lost its log), Unauthenticated, NotFound, ...

        A ``from_now`` subscription has no cursor until it receives an event or a heartbeat
        (whose ``last_seq`` becomes the cursor); if it is cut before either, it resubscribes
        ``from_now`` and events committed in between are not delivered.

        A worker-filtered subscription ends after delivering that worker's WorkerDeleted.
        Heartbeats (seq 0) are yielded only with ``include_heartbeats``. Close the iterator
        (``contextlib.aclosing``) when leaving early, so the call is cancelled promptly.

        With ``batched`` (the default) it reads SubscribeEventBatches — several events per
        message when they are ready together, fewer stream messages per run — and yields their
        events one by one; ``batched=False`` reads SubscribeEvents (one event per message). Both
        yield the same events.

        At a Runtime's shutdown the stream first delivers every committed event (the runs'
        ``RunFinished(INTERRUPTED)`` included) and then ends with RuntimeDraining (UNAVAILABLE,
        ``last_seq`` in its metadata); with ``resume`` this subscription then keeps reconnecting
        with ``backoff`` until the Runtime is back (or ``max_reconnects`` is spent), without
        ``resume`` it raises that RuntimeDraining. ``on_retry(error, delay_s)`` is called before
        each wait to reconnect (e.g. to tell a user "waiting for server").
        """
        check_unicode(worker_id=worker_id, payload_types=payload_types)
        obs = self._observation
        start: Any = obs.SubscribeEventBatches if batched else obs.SubscribeEvents
        metadata = self._metadata
        convert = _convert.event
        eof = grpc.aio.EOF
        cursor = after_seq
        live_only = from_now  # no cursor yet: (re)subscribe from_now
        kinds = list(payload_types)  # KIND names, filtered by the server (seqs then have gaps)
        failures = 0
        while True:
            request = observation_pb.SubscribeEventsRequest(
                worker_id=worker_id, after_seq=cursor, from_now=live_only, payload_types=kinds
            )
            call = start(request, metadata=metadata)
            error: RuntimeServiceError | None = None
            try:
                read = call.read
                while True:
                    msg = await read()
                    if msg is eof:
                        break
                    failures = 0
                    for m in msg.events if batched else (msg,):
                        # converted first: the seq is then a slot read, not a second wire read
                        event = convert(m)
                        seq = event.seq
                        if not seq:  # heartbeat
                            if live_only:
                                # everything up to last_seq was committed before now and none of
                                # it was for this stream, so it is a safe resume point
                                cursor = max(cursor, m.heartbeat.last_seq)
                                live_only = False
                            if include_heartbeats:
                                yield event
                            continue
                        if seq <= cursor and not live_only:
                            continue  # already delivered (defensive: the server never resends)
                        cursor = seq
                        live_only = False
                        yield event
                        if worker_id and event.payload.__class__ is WorkerDeleted:
                            return
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                if not resume or not isinstance(error, _RESUMABLE):
                    raise error from exc
                failures += 1
                if max_reconnects is not None and failures > max_reconnects:
                    raise error from exc
            finally:
                call.cancel()  # no-op when finished; stops the stream when the consumer leaves
            if error is None:  # the server ended the stream: shutdown or restart
                if not resume:
                    return
                failures += 1
                if max_reconnects is not None and failures > max_reconnects:
                    raise Unavailable(
                        f"event stream ended by the server {failures} times in a row; "
                        f"resume with after_seq={cursor}"
                    )
            if isinstance(error, SubscriberLagging) and failures == 1:
                continue  # we were merely slow; the server is healthy
            delay = backoff.delay(failures)
            if on_retry is not None:
                on_retry(error or Unavailable("the server ended the event stream"), delay)
            await asyncio.sleep(delay)
