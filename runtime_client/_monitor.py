"""The health loop of one runtime: contact, identity, the worker cache, and reconnects.

One task per runtime, never blocking anything else: every probe has a deadline
(``probe_timeout_s``), and everything the registry answers from is cached. A cycle:

1. **contact** — GetRuntime (identity: the runtime_id is pinned on first contact, or from
   config; another id → IDENTITY_CHANGED, final), ListProfiles, and a worker-cache snapshot when
   there is none yet; then READY (or DRAINING if the runtime says so).
2. **follow** — concurrently, until one of them fails: the ``grpc.health.v1`` Watch stream
   (remote: SERVING ⇄ NOT_SERVING is READY ⇄ DRAINING; a cut stream is a lost connection at
   once, e.g. a ``kill -9``), GetRuntime every ``refresh_interval_s`` (load, identity, and a
   half-open connection that never answers), and the worker cache's event stream (lifecycle
   kinds only, from the cache's cursor; CURSOR_EXPIRED / CURSOR_AHEAD → a fresh snapshot).
   A GetRuntime that misses its deadline or answers STORE_FAILURE is not taken as a lost
   runtime by itself: GetRuntime is a read of committed state (it waits for the commits in
   flight, and answers STORE_FAILURE while a failed write is rolled back), so a store whose
   writer stalls for a few seconds — a slow disk, a long checkpoint — would make a live runtime
   UNREACHABLE, and every routed call fail fast, for no reason. Health is liveness: the probe
   then asks ``grpc.health.v1`` Check (answered without touching the store; the store's
   failure shows there as NOT_SERVING → DRAINING). SERVING keeps the runtime as it is, with
   its last known load; a check that fails too is a lost connection. An embedded runtime is in
   this process: a slow GetRuntime is only slow.
3. a failure → UNREACHABLE (or AUTH_FAILED for a rejected token), then a jittered exponential
   wait (never a fixed delay) and back to 1. After ``recreate_channel_after`` failures in a row
   the remote channel is closed and made anew (a channel wedged on a dead connection is not
   only retried). A rejected token is probed again only after ``auth_probe_initial_s``, doubling
   to ``auth_probe_max_s``: no tight loop on a bad token.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections.abc import Awaitable, Callable
from typing import Any

from runtime_client._models import RuntimeInfo, RuntimeState
from runtime_client._registry_types import RegistryOptions, RuntimeHealth
from runtime_client._runtime_entry import RuntimeEntry
from runtime_client._worker_cache import LIFECYCLE_TYPES
from runtime_client.errors import (
    CursorAhead,
    CursorExpired,
    DeadlineExceeded,
    RuntimeDraining,
    RuntimeServiceError,
    StoreFailure,
    Unauthenticated,
    Unavailable,
)

__all__ = ["FILTER_FEATURE", "IdentityMismatch", "Monitor", "describe"]

log = logging.getLogger(__name__)

FILTER_FEATURE = "payload_type_filter"
_PROFILES_EVERY = 10  # refreshes between two ListProfiles


class IdentityMismatch(Exception):
    """The entry was marked IDENTITY_CHANGED; its monitor ends."""


def describe(exc: BaseException, timeout: float) -> str:
    """The registry's own words for a failure: no transport message (they name addresses)."""
    if isinstance(exc, Unauthenticated):
        return "the runtime rejected the token (UNAUTHENTICATED)"
    if isinstance(exc, DeadlineExceeded | TimeoutError):
        return f"no answer within {timeout:g} s (DEADLINE_EXCEEDED)"
    if isinstance(exc, RuntimeDraining):
        return "the runtime is shutting down (RUNTIME_DRAINING)"
    if isinstance(exc, Unavailable):
        if "handshake failed" in exc.message.lower():  # TLS: say why (files are the usual fix)
            # (up to the client's closing parenthesis around grpc's words: runtime_client.errors)
            cause = re.search(r"OPENSSL_internal:([^;)]*)", exc.message)
            why = cause[1].strip()[:200] if cause else "check ca_file, cert_file and key_file"
            return f"TLS handshake failed: {why} (UNAVAILABLE)"
        return "cannot reach the runtime (UNAVAILABLE)"
    if isinstance(exc, RuntimeServiceError):
        return f"{exc.reason}: {exc.message}"[:300]
    return f"{type(exc).__name__}"


def jittered(base: float, attempt: int, maximum: float) -> float:
    """``base * 2**(attempt-1)`` capped at ``maximum``, less up to half of it at random."""
    delay = min(maximum, base * 2.0 ** max(0, attempt - 1))
    return delay * (1.0 - 0.5 * random.random())


ClaimId = Callable[[RuntimeEntry, str], str | None]


class Monitor:
    """Runs one entry's health loop (``run``). ``claim_id(entry, runtime_id)`` asks the registry
    to pin an id on first contact; it returns an error text when another entry holds it.
    ``watch`` (remote only) opens the health Watch stream and yields SERVING flags; ``check``
    (remote only) is one health Check (True = SERVING); ``recreate`` (remote only) closes the
    channel and makes a new one."""

    def __init__(
        self,
        entry: RuntimeEntry,
        options: RegistryOptions,
        claim_id: ClaimId,
        *,
        watch: Callable[[], Any] | None = None,
        check: Callable[[], Awaitable[bool]] | None = None,
        recreate: Callable[[], Awaitable[None]] | None = None,
        max_receive: int | None = None,
    ) -> None:
        self.entry = entry
        self.options = options
        self._claim_id = claim_id
        self._watch = watch
        self._check = check
        self._recreate = recreate
        self._slow = False  # the last GetRuntime probe missed its deadline (logged once)
        self._max_receive = max_receive  # remote: the largest answer the channel takes

    async def run(self) -> None:
        entry, opts = self.entry, self.options
        failures = auth_failures = 0
        while True:
            try:
                await self._contact()
                failures = auth_failures = 0
                await self._follow()
            except IdentityMismatch:
                return
            except Unauthenticated as exc:
                auth_failures += 1
                entry.set_state(RuntimeHealth.AUTH_FAILED, describe(exc, opts.probe_timeout_s))
                wait = jittered(opts.auth_probe_initial_s, auth_failures, opts.auth_probe_max_s)
                await self._pause(wait)
                continue
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                error = describe(exc, opts.probe_timeout_s)
                if not isinstance(exc, RuntimeServiceError | TimeoutError):
                    log.warning("runtime %r: health loop error", entry.alias, exc_info=exc)
                if isinstance(exc, RuntimeDraining) and entry.state in (
                    RuntimeHealth.READY,
                    RuntimeHealth.DRAINING,
                ):
                    entry.set_state(RuntimeHealth.DRAINING, error)
                else:
                    entry.set_state(RuntimeHealth.UNREACHABLE, error)
                if self._recreate is not None and failures % opts.recreate_channel_after == 0:
                    await self._recreate()
                await self._pause(jittered(opts.backoff_initial_s, failures, opts.backoff_max_s))

    async def _pause(self, seconds: float) -> None:
        # a routed call that saw the connection fail does not shorten it: backoff is backoff
        await asyncio.sleep(seconds)

    # --- 1. contact ---------------------------------------------------------------------------

    def _verify(self, runtime_id: str) -> None:
        entry = self.entry
        pinned = entry.runtime_id
        if pinned is None:
            clash = self._claim_id(entry, runtime_id)
            if clash is None:
                return
            entry.actual_id = runtime_id
            entry.set_state(RuntimeHealth.IDENTITY_CHANGED, clash)
            raise IdentityMismatch
        if runtime_id != pinned:
            entry.actual_id = runtime_id
            entry.set_state(
                RuntimeHealth.IDENTITY_CHANGED,
                f"expected runtime_id {pinned}, the address answers as {runtime_id}",
            )
            raise IdentityMismatch

    async def _contact(self) -> None:
        entry, opts = self.entry, self.options
        entry.health_serving = True  # until the health stream says otherwise
        async with asyncio.timeout(opts.probe_timeout_s * 2):
            info = await entry.probe.get_runtime()
            self._verify(info.runtime_id)
            entry.profiles = await entry.probe.list_profiles()
        entry.info = info
        sends = info.limits.max_message_bytes
        if self._max_receive is not None and sends > self._max_receive:
            # its legitimate answers may be refused: the operator's choice, said once a contact
            log.warning(
                "runtime %r may answer up to %d bytes (its max_message_bytes), more than "
                "max_receive_message_bytes (%d): such answers fail with MESSAGE_TOO_LARGE; "
                "raise max_receive_message_bytes for it if that runtime is trusted",
                entry.alias,
                sends,
                self._max_receive,
            )
        if not entry.cache.loaded:
            await self._snapshot()
        self._apply_health()

    async def _snapshot(self) -> None:
        entry = self.entry
        # the pages are many calls, each with the probe's deadline
        await entry.cache.snapshot(entry.probe)

    def _apply_health(self) -> None:
        entry = self.entry
        info = entry.info
        draining = not entry.health_serving or (
            info is not None and info.state in (RuntimeState.DRAINING, RuntimeState.STOPPED)
        )
        if draining:
            why = (
                "the runtime is draining" if info and info.state is not RuntimeState.SERVING else ""
            )
            entry.set_state(RuntimeHealth.DRAINING, why or "health check NOT_SERVING")
        else:
            entry.set_state(RuntimeHealth.READY)

    # --- 2. follow ----------------------------------------------------------------------------

    async def _follow(self) -> None:
        loops = [self._refresh(), self._follow_cache()]
        if self._watch is not None:
            loops.append(self._watch_health())
        tasks = [asyncio.ensure_future(c) for c in loops]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
            raise Unavailable("the runtime's streams ended")  # pragma: no cover - all ended
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(BaseException):
                    await task

    async def _refresh(self) -> None:
        entry, opts = self.entry, self.options
        rounds = 0
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(opts.refresh_interval_s):
                    await entry.poked.wait()
            entry.poked.clear()
            rounds += 1
            info = await self._probe_info()
            if info is None:
                continue  # alive, its store slow or failing: keep the last known facts
            self._verify(info.runtime_id)
            entry.info = info
            if rounds % _PROFILES_EVERY == 0:
                async with asyncio.timeout(opts.probe_timeout_s):
                    entry.profiles = await entry.probe.list_profiles()
            self._apply_health()

    async def _probe_info(self) -> RuntimeInfo | None:
        """GetRuntime with the probe's deadline; None when it missed it (or answered
        STORE_FAILURE) while the runtime is alive (see the module doc); raises when it is not."""
        entry, opts = self.entry, self.options
        try:
            async with asyncio.timeout(opts.probe_timeout_s):
                info = await entry.probe.get_runtime()
        except (TimeoutError, DeadlineExceeded, StoreFailure) as exc:
            if self._check is not None:
                entry.health_serving = await self._check()  # raises when the connection is lost
                self._apply_health()
            if not self._slow:
                self._slow = True
                log.info(
                    "runtime %r: GetRuntime %s, but the runtime is alive (health %s): its "
                    "store is slow or failing; keeping it %s",
                    entry.alias,
                    describe(exc, opts.probe_timeout_s),
                    "SERVING" if entry.health_serving else "NOT_SERVING",
                    entry.state.value,
                )
            return None
        self._slow = False
        return info

    async def _follow_cache(self) -> None:
        entry = self.entry
        cache = entry.cache
        info = entry.info
        filtered = info is not None and FILTER_FEATURE in info.capabilities.features
        kinds = LIFECYCLE_TYPES if filtered else ()
        while True:
            if cache.cursor == 0:
                # after_seq=0 means "from the oldest retained", not "after seq 0": if retention
                # already trimmed events since the (empty) snapshot, they would be skipped
                # silently — take the snapshot again instead
                info = await self._probe_info()
                if info is None:
                    await self._pause(self.options.refresh_interval_s)
                    continue
                oldest = info.oldest_seq
                if oldest > 1:
                    await self._snapshot()
                    continue
            stream = entry.handle.subscribe(
                after_seq=cache.cursor, resume=False, payload_types=kinds
            )
            try:
                async with contextlib.aclosing(stream):
                    async for event in stream:
                        cache.apply(event)
            except (CursorExpired, CursorAhead):
                await self._snapshot()
                continue
            except RuntimeDraining:
                # the runtime is going away: the health stream / probes will say when it is back
                entry.set_state(RuntimeHealth.DRAINING, describe(RuntimeDraining(""), 0))
                await asyncio.Event().wait()
            # the runtime ended the stream (it shuts down): wait for the health side to notice
            await asyncio.Event().wait()

    async def _watch_health(self) -> None:
        assert self._watch is not None
        entry = self.entry
        async for serving in self._watch():
            entry.health_serving = serving
            self._apply_health()
        raise Unavailable("the health stream ended")
