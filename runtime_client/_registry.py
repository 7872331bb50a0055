"""``RuntimeRegistry``: one Backend drives an embedded Runtime and many remote ones through one
interface, addressed by ``runtime_id`` (+ ``worker_id``), and never blocks on a dead one.

What it guarantees, and where:

- **Identity** (``_monitor``): a runtime's authority is the ``runtime_id`` its own GetRuntime
  returns. It is pinned on first contact (or given by config); a different answer later puts the
  runtime in IDENTITY_CHANGED for good, and every call to it fails with RuntimeIdentityChanged
  (FAILED_PRECONDITION, metadata ``expected`` / ``actual``). Two registered addresses that
  answer with one runtime_id: the later one is marked IDENTITY_CHANGED ("already registered").
  Aliases are display names and never reach a runtime.
- **Health** (``_monitor``, ``_runtime_entry``): a state machine per runtime, driven by the
  health Watch stream and periodic GetRuntime with deadlines, jittered exponential backoff,
  channel recreation, slow probing of a rejected token.
- **A view that never waits** (``_worker_cache``): ``runtimes()`` and ``list_workers()`` read
  only caches; workers of a runtime that is not READY are returned marked ``stale``.
- **Routing** (``_routed``): ``handle(runtime_id)`` fails fast when the runtime cannot be used;
  runtime errors pass through as the client's classes.
- **Safe retries**: ``create_worker`` / ``send_input`` always carry a ``request_id`` (minted when
  the caller gives none) and are retried on UNAVAILABLE / RUNTIME_DRAINING — waiting for the
  runtime to be READY again — within a bounded budget. The runtime's idempotency keys survive
  its restarts, so a retry never starts a second run. No failover: a request stays on its runtime.
- **Placement** (``_placement``) and **merged subscriptions** (``_merged``).

Embedded handles are registered as given and are not closed by the registry (their owner closes
them); remote connections are the registry's and are closed by ``close``.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runtime_client._client import RuntimeClient, check_receive_limit
from runtime_client._handle import RuntimeHandle
from runtime_client._merged import merged
from runtime_client._models import Accepted, BusyPolicy, Created, WorkerState
from runtime_client._monitor import Monitor
from runtime_client._placement import choose
from runtime_client._registry_config import ClientTLS, RegistryConfig, RegistryConfigError
from runtime_client._registry_retry import call_with_retries
from runtime_client._registry_types import (
    RegistryItem,
    RegistryOptions,
    RuntimeHealth,
    RuntimeStateChanged,
    RuntimeStatus,
    WorkerView,
)
from runtime_client._remote import RemoteConnection
from runtime_client._routed import RoutedHandle
from runtime_client._runtime_entry import RuntimeEntry
from runtime_client._tls import channel_credentials
from runtime_client.errors import RuntimeNotFound

if TYPE_CHECKING:
    from typing import Self

__all__ = ["RuntimeRegistry"]


class RuntimeRegistry:
    """See the module docstring. Register runtimes, then ``await start()`` (or ``async with``)."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self._options = options or RegistryOptions()
        self._entries: list[RuntimeEntry] = []
        self._by_id: dict[str, RuntimeEntry] = {}
        self._handles: dict[int, RoutedHandle] = {}
        self._remotes: dict[int, RemoteConnection] = {}  # by id(entry); holds the target
        self._monitors: list[asyncio.Task[None]] = []
        self._closing: set[asyncio.Task[None]] = set()
        self._retired: set[RuntimeClient] = set()  # replaced channels, closed a little later
        self._state = "new"

    # --- registration -------------------------------------------------------------------------

    def _add(self, entry: RuntimeEntry) -> None:
        if self._state != "new":
            raise RuntimeError("runtimes are added before start()")
        if any(e.alias == entry.alias for e in self._entries):
            raise ValueError(f"alias: {entry.alias!r} is already registered")
        rid = entry.runtime_id
        if rid is not None:
            if rid in self._by_id:
                raise ValueError(f"expected_runtime_id: {rid!r} is already registered")
            self._by_id[rid] = entry
        self._entries.append(entry)
        self._handles[id(entry)] = RoutedHandle(entry)

    def add_embedded(self, handle: RuntimeHandle, *, alias: str = "embedded") -> None:
        """An in-process runtime (``runtime_server.EmbeddedRuntime``); the caller closes it."""
        if not isinstance(handle, RuntimeHandle):
            raise TypeError(
                "handle: not a RuntimeHandle (it lacks some of RuntimeClient's methods)"
            )
        self._add(RuntimeEntry(alias=alias, kind="embedded", handle=handle))

    def add_remote(
        self,
        target: str,
        *,
        alias: str | None = None,
        token: str | None = None,
        tls: ClientTLS | None = None,
        expected_runtime_id: str | None = None,
        max_receive_message_bytes: int | None = None,
    ) -> None:
        """A runtime over gRPC at ``target`` (host:port). ``alias`` is a display name (default
        ``remote-N``); ``expected_runtime_id`` refuses any other runtime at that address;
        ``max_receive_message_bytes`` bounds its answers (default: the options')."""
        if not target or ":" not in target:
            raise ValueError(f"target: expected host:port, got {target!r}")
        if any(c.target == target for c in self._remotes.values()):
            raise ValueError("target: already registered")
        if tls is not None:  # the PEM files are read and checked now (ValueError naming one)
            channel_credentials(
                True, ca_file=tls.ca_file, cert_file=tls.cert_file, key_file=tls.key_file
            )
        if max_receive_message_bytes is not None:
            check_receive_limit(max_receive_message_bytes)
        n = len(self._remotes) + 1
        conn = RemoteConnection(
            target,
            token=token,
            tls=tls,
            options=self._options,
            max_receive_message_bytes=max_receive_message_bytes,
        )
        # the clients are built in start(), inside the event loop; until then a placeholder
        entry = RuntimeEntry(
            alias=alias or f"remote-{n}",
            kind="remote",
            handle=_NOT_STARTED,
            expected_runtime_id=expected_runtime_id,
        )
        self._add(entry)
        self._remotes[id(entry)] = conn

    @classmethod
    def from_config(
        cls,
        config: RegistryConfig,
        *,
        embedded: RuntimeHandle | None = None,
        options: RegistryOptions | None = None,
    ) -> RuntimeRegistry:
        """A registry of the config's remote runtimes (tokens read from their env vars now:
        RegistryConfigError naming ``runtimes[i].token_env`` if one is unset) plus ``embedded``."""
        registry = cls(options)
        if embedded is not None:
            alias = config.embedded.alias if config.embedded is not None else "embedded"
            registry.add_embedded(embedded, alias=alias)
        for i, remote in enumerate(config.runtimes):
            try:
                registry.add_remote(
                    remote.target,
                    alias=remote.alias,
                    token=remote.token(f"runtimes[{i}].token_env"),
                    tls=remote.tls,
                    expected_runtime_id=remote.expected_runtime_id,
                    max_receive_message_bytes=remote.max_receive_message_bytes,
                )
            except RegistryConfigError:
                raise
            except ValueError as exc:  # a TLS file ("ca_file: No such file ..."), named
                raise RegistryConfigError(f"runtimes[{i}].{exc}") from exc
        return registry

    # --- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the remote channels and start every runtime's health loop; then wait (at most
        about two probe deadlines) for each runtime's first contact to succeed or fail."""
        if self._state != "new":
            return
        self._state = "started"
        opts = self._options
        for entry in self._entries:
            conn = self._remotes.get(id(entry))
            if conn is None:
                monitor = Monitor(entry, opts, self._claim_id)
            else:
                entry.handle, entry.probe = conn.open()
                monitor = Monitor(
                    entry,
                    opts,
                    self._claim_id,
                    watch=conn.watch,
                    check=conn.check,
                    recreate=self._recreator(entry),
                    max_receive=conn.max_receive,
                )
            self._monitors.append(asyncio.ensure_future(monitor.run()))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(opts.probe_timeout_s * 2 + 0.5):
                for entry in self._entries:
                    while entry.state is RuntimeHealth.CONNECTING:
                        await entry.wait_changed()

    def _recreator(self, entry: RuntimeEntry) -> Callable[[], Awaitable[None]]:
        async def recreate() -> None:
            conn = self._remotes[id(entry)]
            old = conn.client
            entry.handle, entry.probe = conn.open()
            if old is not None:
                # Later and in the background: calls and streams still on the old channel end
                # by their own deadline and are retried on the new one (closing it now would
                # fail them with a usage error); a wedged close must not stall the health loop.
                self._retired.add(old)

                async def retire() -> None:
                    await asyncio.sleep(self._options.call_timeout_s)
                    self._retired.discard(old)
                    await old.close(0)

                task = asyncio.ensure_future(retire())
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

        return recreate

    async def close(self) -> None:
        """Stop the health loops and close the remote connections. Safe to call twice."""
        if self._state == "closed":
            return
        self._state = "closed"
        for task in self._monitors:
            task.cancel()
        if self._monitors:
            # bounded: a health loop stuck in a handle that swallows cancellation must not hang
            # the Backend's shutdown
            await asyncio.wait(self._monitors, timeout=5.0)
        for task in self._closing:
            task.cancel()
        for client in [*self._retired, *(c.client for c in self._remotes.values() if c.client)]:
            with contextlib.suppress(Exception):
                await client.close(0)
        self._retired.clear()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def _claim_id(self, entry: RuntimeEntry, runtime_id: str) -> str | None:
        other = self._by_id.get(runtime_id)
        if other is not None and other is not entry:
            return (
                f"runtime_id {runtime_id} is already registered as {other.alias!r} "
                "(two addresses reach one runtime)"
            )
        entry.runtime_id = runtime_id
        self._by_id[runtime_id] = entry
        return None

    def listen(self, listener: Callable[[RuntimeStateChanged], None]) -> Callable[[], None]:
        """Call ``listener(change)`` on every state change of every registered runtime (e.g. to
        act when one becomes READY). It is called synchronously on the event loop, so it must
        not block. Returns a function that stops it."""
        stops = [e.listen(listener) for e in self._entries]

        def stop() -> None:
            for s in stops:
                s()

        return stop

    # --- the cached view ----------------------------------------------------------------------

    def runtimes(self) -> list[RuntimeStatus]:
        """Every registered runtime's status, from the cache (never waits)."""
        return [e.status() for e in self._entries]

    def list_workers(
        self,
        *,
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
        runtime_id: str | None = None,
    ) -> list[WorkerView]:
        """Workers of every runtime (or one), from the caches (never waits). A worker whose
        runtime is not READY is ``stale``."""
        out: list[WorkerView] = []
        for entry in self._entries:
            rid = entry.runtime_id
            if rid is None or (runtime_id is not None and rid != runtime_id):
                continue
            stale = entry.state is not RuntimeHealth.READY
            out.extend(entry.cache.views(rid, stale=stale, state=state, labels=labels))
        return out

    # --- routing ------------------------------------------------------------------------------

    def _entry(self, runtime_id: str) -> RuntimeEntry:
        entry = self._by_id.get(runtime_id)
        if entry is None:
            raise RuntimeNotFound(f"no runtime {runtime_id!r} is registered", runtime_id=runtime_id)
        return entry

    def handle(self, runtime_id: str) -> RuntimeHandle:
        """The runtime's handle; RuntimeNotFound / RuntimeUnavailable / RuntimeIdentityChanged at
        once when it cannot be used now."""
        entry = self._entry(runtime_id)
        entry.check()
        return self._handles[id(entry)]

    async def create_worker(
        self,
        *,
        profile: str = "",
        runtime_id: str | None = None,
        request_id: str = "",
        timeout: float | None = None,  # noqa: ASYNC109
        **create_kwargs: Any,
    ) -> tuple[str, Created]:
        """Create a worker on ``runtime_id``, or on the least-loaded READY runtime offering
        ``profile`` (NoRuntimeAvailable naming it when none does). Carries ``request_id`` (minted
        when empty) and is retried within ``timeout`` (default: the options' retry budget)."""
        entry = choose(self._entries, profile) if runtime_id is None else self._entry(runtime_id)
        key = request_id or str(uuid.uuid4())
        budget = self._options.retry_budget_s if timeout is None else timeout

        async def call(h: RuntimeHandle) -> Created:
            return await h.create_worker(profile=profile, request_id=key, **create_kwargs)

        created = await call_with_retries(entry, call, budget, self._options)
        entry.cache.upsert(created.worker, created.seq)
        return entry.runtime_id or "", created

    async def send_input(
        self,
        runtime_id: str,
        worker_id: str,
        text: str,
        *,
        request_id: str | None = None,
        busy_policy: BusyPolicy = BusyPolicy.REJECT,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> Accepted:
        """Send input to a worker; carries ``request_id`` (minted when None) and is retried
        within ``timeout`` (default: the options' retry budget): never a second run."""
        entry = self._entry(runtime_id)
        key = request_id or str(uuid.uuid4())
        budget = self._options.retry_budget_s if timeout is None else timeout

        async def call(h: RuntimeHandle) -> Accepted:
            return await h.send_input(worker_id, text, request_id=key, busy_policy=busy_policy)

        return await call_with_retries(entry, call, budget, self._options)

    def subscribe(
        self,
        *,
        runtime_id: str | None = None,
        worker_id: str | None = None,
        after_seq: int = 0,
        payload_types: Sequence[str] = (),
    ) -> AsyncGenerator[RegistryItem, None]:
        """Events of one runtime (optionally one worker), from ``after_seq``; or of every
        runtime when ``runtime_id`` is None (each from its last seq when first reached;
        ``after_seq`` applies to none). Resumes per runtime across disconnects and restarts;
        runtime state changes come in-band (see ``_merged``)."""
        if runtime_id is None:
            if worker_id:
                raise ValueError("worker_id: needs runtime_id")
            entries = list(self._entries)
            start: int | None = None
            single = False
        else:
            entries = [self._entry(runtime_id)]
            if entries[0].state is RuntimeHealth.IDENTITY_CHANGED:
                raise entries[0].unusable()
            start = after_seq
            single = True
        return merged(
            entries,
            self._options,
            worker_id=worker_id or "",
            after_seq=start,
            payload_types=tuple(payload_types),
            single=single,
        )


class _NotStarted:
    def __getattr__(self, name: str) -> Any:
        raise RuntimeError("the registry is not started")


_NOT_STARTED: Any = _NotStarted()
