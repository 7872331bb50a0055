"""The embedded handle's streaming calls (``EmbeddedRuntime`` inherits them): ``subscribe`` with
``RuntimeClient.subscribe``'s resumption, heartbeats and ending rules, and ``wait_run``. Kept
apart, as the client keeps its own in ``runtime_client._streams``, so the handle's class stays
readable."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Sequence
from typing import TYPE_CHECKING

from runtime_client import DEFAULT_BACKOFF, Backoff, Event, Run, WorkerDeleted
from runtime_client import errors as cerr
from runtime_client.errors import RuntimeServiceError
from runtime_server import _embedded_convert as cv
from runtime_server import errors
from runtime_server.model import now

if TYPE_CHECKING:
    import contextlib

    from runtime_server.runtime import Runtime

# As RuntimeClient.subscribe: errors after which a subscription resumes instead of raising.
_RESUMABLE = (cerr.SubscriberLagging, cerr.Unavailable, cerr.RuntimeDraining)


class EmbeddedStreamCalls:
    """Needs ``_runtime`` and ``_translated`` (EmbeddedRuntime's)."""

    _runtime: Runtime

    if TYPE_CHECKING:

        def _translated(self) -> contextlib.AbstractContextManager[None]: ...

    # a timeout parameter (not only asyncio.timeout around the call) is part of the API contract
    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        """Wait until the run is terminal and return it; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            with self._translated():
                return cv.run(await self._runtime.wait_run(run_id))

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
        replayed then live, optionally for one worker only — as RuntimeClient.subscribe (also its
        ``payload_types`` filter), with the
        same resumption after SUBSCRIBER_LAGGING, heartbeats every ``heartbeat_interval`` on a
        quiet stream (yielded with ``include_heartbeats``), and the same end after a
        worker-filtered stream's WorkerDeleted. ``batched`` changes nothing in-process. At the
        Runtime's close the stream delivers every committed event, then raises RuntimeDraining
        (``last_seq``): a closed in-process Runtime does not come back, so it is not awaited."""
        runtime = self._runtime
        interval = runtime.limits.heartbeat_interval_seconds or None
        cursor = after_seq
        live_only = from_now  # no cursor yet: (re)subscribe from_now
        failures = 0
        while True:
            error: RuntimeServiceError | None = None
            cv.uint64_in(cursor)
            try:
                with self._translated():
                    sub = runtime.subscribe(
                        after_seq=cursor,
                        worker_id=worker_id,
                        from_now=live_only,
                        payload_types=payload_types,
                    )
                try:
                    while True:
                        with self._translated():
                            item = await sub.next(interval)
                            if item is None and sub.closed:
                                # shutdown, after everything committed was delivered
                                raise errors.RuntimeDraining(sub.last_seq)
                        failures = 0
                        if item is None:  # a quiet stream: heartbeat
                            if live_only:
                                cursor = max(cursor, sub.last_seq)
                                live_only = False
                            if include_heartbeats:
                                yield cv.heartbeat(sub.last_seq, now())
                            continue
                        if item.seq <= cursor and not live_only:
                            continue  # already delivered
                        event = cv.event(item)
                        cursor = item.seq
                        live_only = False
                        yield event
                        if worker_id and event.payload.__class__ is WorkerDeleted:
                            return
                finally:
                    sub.close()
            except RuntimeServiceError as exc:
                if not resume or not isinstance(exc, _RESUMABLE) or runtime.closing:
                    raise
                failures += 1
                if max_reconnects is not None and failures > max_reconnects:
                    raise
                error = exc
            if isinstance(error, cerr.SubscriberLagging) and failures == 1:
                continue  # we were merely slow; the runtime is healthy
            delay = backoff.delay(failures)
            if on_retry is not None and error is not None:
                on_retry(error, delay)
            await asyncio.sleep(delay)
