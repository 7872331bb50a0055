"""The Runtime's state and lifecycle: what a :class:`~runtime_server.runtime.Runtime` holds (the
hosts of its workers, the run book, idempotency keys, the event log) and how it starts and closes.

``start()`` acquires each resource onto a stack as it succeeds (``_lifecycle``), so a failed start
releases what it acquired; ``close(grace_s)`` drains the runs, then releases the stack and raises
what failed. The queries (``_queries``) and the commands (``_runtime``) build on this class.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from collections.abc import Mapping
from typing import Self

from runtime_server import errors, logcontext, wire_size
from runtime_server.model import (
    DiagnosticLevel,
    Limits,
    RunState,
    TranscriptEntry,
    Worker,
    now,
)
from runtime_server.runtime import _recovery as recovery
from runtime_server.runtime._budget import (
    KEY_RECORD_BYTES,
    RUN_RECORD_BYTES,
    WORKER_RECORD_BYTES,
    InputQueue,
    MemoryBudget,
)
from runtime_server.runtime._bundles import ConfigBundles
from runtime_server.runtime._diagnostics import Diagnostics
from runtime_server.runtime._eventlog import EventLog
from runtime_server.runtime._host import HostContext, WorkerHost
from runtime_server.runtime._ids import uuid7
from runtime_server.runtime._info import (
    RuntimeState,
    limits_from,
)
from runtime_server.runtime._lifecycle import Resources, RuntimeCloseError
from runtime_server.runtime._local import LocalModels
from runtime_server.runtime._observer import RuntimeObserver
from runtime_server.runtime._policy import HostPolicy
from runtime_server.runtime._profiles import Config, default_config
from runtime_server.runtime._providers import (
    HttpProviderFactory,
    ProviderFactory,
    Providers,
    ToolsFactory,
)
from runtime_server.runtime._request_limits import (
    check_id,
)
from runtime_server.runtime._runbook import RunBook
from runtime_server.runtime._settle import settle
from runtime_server.runtime._storewatch import StoreState, StoreWatch
from runtime_server.runtime._transcripts import Transcripts
from runtime_server.runtime._workspaces import Workspaces
from runtime_server.store import (
    MemoryStore,
    PutRequestKey,
    Store,
    StoredState,
)

log = logging.getLogger(__name__)

MESSAGE_HEADROOM_BYTES = 16 * 1024  # an event's ids, times and framing (< 1 kB) around its text


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class RuntimeCore:
    """State, lifecycle and shared helpers of the Runtime (see the module doc)."""

    def __init__(
        self,
        *,
        store: Store | None = None,
        config: Config | None = None,
        limits: Limits | None = None,
        provider_factory: ProviderFactory | None = None,
        tools_factory: ToolsFactory | None = None,
        policy: HostPolicy | None = None,
    ) -> None:
        self._config = config or default_config()
        lim = self._limits = limits or limits_from(self._config.limits)
        # Host policy (allowed roots, protected paths, capabilities): the argument, else the
        # config's [workspaces]/[capabilities]. A SQLite store's directory is never a workspace.
        policy = policy or self._config.policy
        store_path = getattr(store, "path", None)
        if store_path is not None:
            policy = policy.with_reserved(os.path.dirname(os.path.realpath(store_path)))
        self._workspaces = Workspaces(policy, lim)
        # Pages (workers, events, transcript, diagnostics) are bounded by size as well as count, so
        # that a page always fits in one gRPC message: by an upper bound of their encoded size.
        self._page_bytes = wire_size.page_budget(lim.max_message_bytes)
        self._store: Store = store or MemoryStore(
            retention_events=lim.event_retention_events,
            retention_seconds=lim.event_retention_seconds,
            # The log may take half the memory budget; the rest is left to the state.
            retention_bytes=max(1, lim.max_memory_bytes // 2),
        )
        self._transcripts = Transcripts(
            self._store,
            window_bytes=lim.transcript_window_bytes,
            cache_bytes=min(lim.transcript_cache_bytes, lim.max_memory_bytes),
        )
        self._budget = MemoryBudget(
            lim.max_memory_bytes, self._store, self._transcripts, self._record_bytes
        )
        # The default factory (HTTP client, local models) is the Runtime's to open and close.
        self._own_factory: HttpProviderFactory | None = None
        if provider_factory is None:
            provider_factory = self._own_factory = HttpProviderFactory(
                LocalModels(notify=self._on_local_model)
            )
        self._providers = Providers(provider_factory)
        self._providers.store = self._store  # its write backlog paces run streams (_backpressure)
        self._book = RunBook(lim.max_retained_runs)
        self._diagnostics = Diagnostics(lim)
        self._state = RuntimeState.STARTING
        self._runtime_id = ""
        self._started_at = 0.0
        self._hosts: dict[str, WorkerHost] = {}
        self._create_keys: OrderedDict[str, PutRequestKey] = OrderedDict()
        self._bundles = ConfigBundles(self)  # config bundles and profile snapshots (_bundles)
        self._ctx = HostContext(
            runs=self._book,
            transcripts=self._transcripts,
            providers=self._providers,
            tools_factory=tools_factory or self._workspaces.tools_factory(),
            profile=self._bundles.profile_of,  # a bundle worker's snapshot, or the host's
            diagnose=self._diagnose,
            release_claims=self._workspaces.allocations.release,
            serving=lambda: self._state is RuntimeState.SERVING,
        )
        self._log: EventLog | None = None
        self._resources: Resources | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._store_watch = StoreWatch(self)
        self._observer: RuntimeObserver | None = None  # operators' metrics (_observer)

    # --- lifecycle ---

    async def __aenter__(self) -> Self:
        """Start the Runtime (see :meth:`start`)."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the Runtime with no grace (see :meth:`close`)."""
        await self.close()

    async def start(self) -> None:
        """Acquire the providers, open the store and recover what it holds (runs that were
        active become INTERRUPTED); the Runtime serves once the recovery is committed. A start
        that fails releases what it had acquired (the Runtime is then STOPPED) and raises.
        Idempotent."""
        if self._state is not RuntimeState.STARTING or self._resources is not None:
            return
        resources = self._resources = Resources(quiet=self._store_watch.reported)
        try:
            await self._acquire(resources)
        except BaseException:
            self._state = RuntimeState.STOPPED
            await resources.release()  # (its failures are logged; the start's error is raised)
            self._log = self._ctx.log = self._diagnostics.log = None
            raise
        self._started_at = now()
        self._state = RuntimeState.SERVING

    async def _acquire(self, resources: Resources) -> None:
        """Each resource goes on the stack as soon as it is acquired (released in reverse)."""
        factory = self._own_factory
        if factory is not None:  # (its HTTP client is created at the first provider built)
            resources.push("the HTTP client", factory.aclose)
            resources.push("the local models", factory.local.aclose)
        self._providers.observer = self._observer
        resources.push("the providers", self._providers.aclose)
        stored = await self._store.open(uuid7())
        resources.push("the store", self._store.close)
        self._runtime_id = stored.runtime_id
        log_ = EventLog(
            self._store,
            last_seq=stored.last_seq,
            buffer_limit=max(1, self._limits.subscriber_buffer_events),
        )
        log_.observer = self._observer
        self._log = self._ctx.log = self._diagnostics.log = log_
        # Subscriptions end (each after handing over what it holds) and the store closes only
        # once no read is in flight and none can start.
        resources.push("the event log", self._close_log)
        logcontext.set_runtime_id(self._runtime_id)
        self._store.set_failure_listener(self._store_watch.on_failure)
        tails = self._load(stored)
        # The diagnostics ring survives restarts: the store keeps the newest capacity of them.
        self._diagnostics.load(await self._store.read_diagnostics())
        self._recover(tails)
        # At close, the runs' final events are committed before the subscriptions end.
        resources.push("the final flush", self._store.flush)
        # Serve only once the recovery is committed (flush raises if the store cannot commit).
        await self._store.flush()

    async def _close_log(self) -> None:
        log_ = self._require_log()
        log_.close_all()
        await log_.stop_reads()

    def _reset_state(self) -> None:
        """Forget the workers and runs held in memory (before ``_load`` rebuilds them from the
        store after a store failure): everything ``_load`` fills."""
        self._hosts = {}
        self._create_keys = OrderedDict()
        self._book.reset()
        self._transcripts.reset()  # windows and queues are rebuilt with the hosts
        self._budget.queued_bytes = 0

    def _load(self, stored: StoredState) -> Mapping[str, list[TranscriptEntry]]:
        """Workers, runs, transcripts and keys as the store has them (at start, and after a
        store failure); returns the open transcript tails for ``_recover``."""
        lim = self._limits
        self._bundles.load(stored)
        return recovery.load(
            stored,
            self._hosts,
            self._book,
            self._create_keys,
            self._new_host,
            self._remember,
            (lim.idempotency_keys_create, lim.idempotency_keys_per_worker),
        )

    def _recover(
        self,
        tails: Mapping[str, list[TranscriptEntry]],
        why: str = "the runtime stopped",
        *,
        diagnose: bool = True,
    ) -> None:
        """Close what the previous process (or the failed store) left open (see _recovery)."""
        log_ = self._require_log()
        last_seq = log_.last_assigned_seq
        interrupted = recovery.recover(log_, self._hosts, self._book, tails, why)
        if diagnose and (self._hosts or interrupted):
            self._diagnose(
                DiagnosticLevel.INFO,
                "RECOVERED",
                f"recovered {_count(len(self._hosts), 'worker')}; "
                f"{_count(interrupted, 'run')} marked INTERRUPTED; "
                f"event log continues after seq {last_seq}",
            )
        # Claims follow the workers just loaded (at start, and after a store failure rolled
        # memory back to the committed state).
        recovery.reclaim(log_, self._hosts, self._workspaces, self._config, self._diagnose)

    async def close(self, grace_s: float = 0.0) -> None:
        """Drain and stop: no new work; active runs get ``grace_s`` seconds, then are interrupted
        (keeping their partial answers); subscriptions end; the store is flushed and closed, then
        the providers, local models and HTTP client. Every release runs; failures (other than a
        store failure already reported) are raised together as :class:`RuntimeCloseError`. Safe
        to call more than once (later calls wait for the first)."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(grace_s))
        await asyncio.shield(self._close_task)

    async def _close(self, grace_s: float) -> None:
        resources = self._resources
        if resources is None or self._state is RuntimeState.STOPPED:
            self._state = RuntimeState.STOPPED
            return
        self._state = RuntimeState.DRAINING
        await self._store_watch.close()
        tasks = [h.task for h in self._hosts.values() if h.task is not None and not h.task.done()]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        for host in self._hosts.values():
            host.drop_queue(RunState.INTERRUPTED, "the runtime shut down")
            host.cancel_active(RunState.INTERRUPTED, "the runtime shut down")
        tasks = [h.task for h in self._hosts.values() if h.task is not None and not h.task.done()]
        if tasks:
            await asyncio.wait(tasks)
        # The final flush, the subscriptions' end, the store, the providers, the local models
        # and the HTTP client, in that order (see _acquire).
        failures = await resources.release()
        self._state = RuntimeState.STOPPED
        if failures:
            raise RuntimeCloseError("closing the runtime failed", failures)

    @property
    def state(self) -> RuntimeState:
        """STARTING, SERVING, DRAINING or STOPPED."""
        return self._state

    def set_observer(self, observer: RuntimeObserver | None) -> None:
        """Report runs, diagnostics, provider requests and commits to ``observer`` (before
        :meth:`start`; see ``runtime_server.runtime._observer``)."""
        if self._log is not None:
            raise errors.FailedPrecondition("set the observer before the runtime starts")
        self._observer = self._book.observer = self._diagnostics.observer = observer

    @property
    def runtime_id(self) -> str:
        """The stable id, kept by a persistent store across restarts ("" before start)."""
        return self._runtime_id

    @property
    def limits(self) -> Limits:
        """Every bound the Runtime enforces."""
        return self._limits

    @property
    def config_bundles(self) -> ConfigBundles:
        """Config bundles: put, get, list, delete (see ``_bundles``)."""
        return self._bundles

    @property
    def config(self) -> Config:
        """The providers and profiles it was given."""
        return self._config

    def _require_log(self) -> EventLog:
        if self._log is None:
            raise errors.FailedPrecondition("the runtime is not started")
        return self._log

    def _check_serving(self) -> EventLog:
        log_ = self._require_log()
        if self._state is not RuntimeState.SERVING:
            raise errors.RuntimeDraining()
        self._store_watch.check()
        return log_

    @property
    def started(self) -> bool:
        """Whether start() has begun (the state is no longer STARTING)."""
        return self._state is not RuntimeState.STARTING

    @property
    def closing(self) -> bool:
        """Whether close() has been called (it may still be draining)."""
        return self._close_task is not None

    # --- diagnostics ---

    def _diagnose(
        self, level: DiagnosticLevel, code: str, message: str, worker_id: str = "", run_id: str = ""
    ) -> None:
        self._diagnostics.record(level, code, message, worker_id, run_id)

    def _on_local_model(self, code: str, message: str) -> None:
        level = DiagnosticLevel.INFO if code == "LOCAL_MODEL_STARTED" else DiagnosticLevel.WARNING
        self._diagnose(level, code, message)

    def _unsettled(self, worker_id: str = "") -> int:
        """The seq an answer about ``worker_id`` (about the whole Runtime with "") waits for to
        be committed; 0 = nothing pending (always on the memory store); ``_settle.LOST`` = it
        could show a change a store failure discarded (it answers STORE_FAILURE)."""
        log_ = self._log
        if log_ is None:
            return 0
        seq = log_.unsettled(worker_id) if worker_id else log_.unsettled_any()
        # (a failure discarded what memory shows and it is not rolled back yet: LOST, see _settle)
        if seq or self._store_watch.discarded is None:  # (the common case: one attribute read)
            return seq
        return self._store_watch.lost(worker_id)

    async def _settled(self, seq: int) -> None:
        """Wait until ``seq`` is committed (skipped while the store fails; see _settle)."""
        await settle(self._log, seq, self._store_watch.state is StoreState.OK)

    def _host(self, worker_id: str) -> WorkerHost:
        check_id("worker_id", worker_id, self._limits)
        host = self._hosts.get(worker_id)
        if host is None:
            raise errors.WorkerNotFound(worker_id)
        return host

    # --- helpers ---

    def _new_host(self, worker: Worker, transcript_length: int = 0) -> WorkerHost:
        return WorkerHost(
            worker,
            self._transcripts.open(worker.worker_id, transcript_length),
            InputQueue(self._budget),
            self._ctx,
        )

    def _record_bytes(self) -> int:
        """The memory budget's allowance for the Runtime's records (see _budget)."""
        return (
            len(self._hosts) * WORKER_RECORD_BYTES
            + len(self._book.runs) * RUN_RECORD_BYTES
            + len(self._create_keys) * KEY_RECORD_BYTES
            + self._bundles.snapshot_bytes  # bundle workers' profile snapshots
        )

    def _page_size(self, page_size: int) -> int:
        if page_size < 0:
            raise errors.InvalidArgument("page_size", "must be >= 0")
        if page_size == 0:
            return self._limits.default_page_size
        return min(page_size, self._limits.max_page_size)

    @staticmethod
    def _remember(keys: OrderedDict[str, PutRequestKey], key: PutRequestKey, capacity: int) -> None:
        keys[key.request_id] = key
        while len(keys) > max(1, capacity):
            keys.popitem(last=False)
