"""One registered runtime: its handle, pinned identity, health state, cached facts and worker
cache, plus the checks every routed call makes before touching the network.

The state machine (driven by ``_monitor``)::

    CONNECTING ──► READY ◄──► DRAINING
         any ──► UNREACHABLE ──► READY      (transport failure; back after a verified probe)
         any ──► AUTH_FAILED ──► READY      (the token was rejected; probed again slowly)
         any ──► IDENTITY_CHANGED           (final: the address answers as another runtime)

Every change wakes the waiters (``wait_changed``) and is told to the listeners (merged
subscriptions report it in-band). ``last_error`` is written by the registry in its own words —
never a raw transport message, which would carry the runtime's address to whoever displays it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Literal

from runtime_client._handle import RuntimeHandle
from runtime_client._models import Profile, RuntimeInfo
from runtime_client._registry_types import (
    RuntimeHealth,
    RuntimeLoad,
    RuntimeStateChanged,
    RuntimeStatus,
)
from runtime_client._worker_cache import WorkerCache
from runtime_client.errors import RuntimeIdentityChanged, RuntimeUnavailable

__all__ = ["RuntimeEntry"]

Listener = Callable[[RuntimeStateChanged], None]

# States in which calls are routed: DRAINING still answers reads (new work is refused by the
# runtime itself, with RUNTIME_DRAINING).
ROUTABLE = frozenset({RuntimeHealth.READY, RuntimeHealth.DRAINING})


class RuntimeEntry:
    def __init__(
        self,
        *,
        alias: str,
        kind: Literal["embedded", "remote"],
        handle: RuntimeHandle,
        probe: RuntimeHandle | None = None,
        expected_runtime_id: str | None = None,
    ) -> None:
        self.alias = alias
        self.kind = kind
        self.handle = handle  # routed calls (remote: the call deadline, the client's retries)
        self.probe = probe or handle  # health probes (remote: a short deadline, no retries)
        self.runtime_id: str | None = expected_runtime_id  # pinned
        self.actual_id = ""  # what the address answered with, once it differs
        self.state = RuntimeHealth.CONNECTING
        self.since = time.time()
        self.last_error = ""
        self.info: RuntimeInfo | None = None
        self.profiles: tuple[Profile, ...] = ()
        self.health_serving = True  # the last grpc.health Watch answer (remote)
        self.cache = WorkerCache()
        self._changed = asyncio.Event()
        self._listeners: set[Listener] = set()
        self.poked = asyncio.Event()  # "check now": a routed call saw the connection fail

    # --- state ---------------------------------------------------------------------------------

    def set_state(self, state: RuntimeHealth, error: str = "") -> None:
        if state is RuntimeHealth.READY:
            error = ""
        if state is self.state:
            self.last_error = error or self.last_error
            return
        if self.state is RuntimeHealth.IDENTITY_CHANGED:
            return  # final
        previous, self.state = self.state, state
        self.since = time.time()
        self.last_error = error
        change = RuntimeStateChanged(self.runtime_id or "", state, previous, error)
        for listener in list(self._listeners):
            listener(change)
        event, self._changed = self._changed, asyncio.Event()
        event.set()

    async def wait_changed(self) -> None:
        await self._changed.wait()

    def listen(self, listener: Listener) -> Callable[[], None]:
        self._listeners.add(listener)
        return lambda: self._listeners.discard(listener)

    def poke(self) -> None:
        self.poked.set()

    # --- routing checks ------------------------------------------------------------------------

    def check(self) -> RuntimeHandle:
        """The handle, if calls may be routed now; else the typed error, at once."""
        state = self.state
        if state in ROUTABLE:
            return self.handle
        raise self.unusable()

    def unusable(self) -> RuntimeIdentityChanged | RuntimeUnavailable:
        rid = self.runtime_id or ""
        if self.state is RuntimeHealth.IDENTITY_CHANGED:
            return RuntimeIdentityChanged(
                f"runtime {self.alias!r} changed identity: {self.last_error}",
                runtime_id=rid,
                expected=rid,
                actual=self.actual_id,
            )
        why = f": {self.last_error}" if self.last_error else ""
        return RuntimeUnavailable(
            f"runtime {self.alias!r} is {self.state.value}{why}",
            runtime_id=rid,
            state=self.state.value,
        )

    # --- cached facts --------------------------------------------------------------------------

    def load(self) -> RuntimeLoad:
        info = self.info
        active = info.active_runs if info else 0
        queued = info.queued_runs if info else 0
        return RuntimeLoad(active, queued, len(self.cache.workers))

    def offers(self, profile: str) -> bool:
        # "" is the built-in echo profile, which every runtime has
        return not profile or any(p.name == profile for p in self.profiles)

    def status(self) -> RuntimeStatus:
        return RuntimeStatus(
            runtime_id=self.runtime_id,
            alias=self.alias,
            kind=self.kind,
            state=self.state,
            since=self.since,
            last_error=self.last_error,
            info=self.info,
            profiles=self.profiles,
            load=self.load(),
        )
