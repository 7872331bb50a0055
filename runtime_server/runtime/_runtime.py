"""The Runtime: hosts Workers, runs their Runs, and records everything in the event log.

Concurrency model: one asyncio loop. Every decision that must be atomic (the single-flight gate,
idempotency lookups, queue bounds) is taken synchronously — with no ``await`` between the check
and the state change — so N concurrent callers cannot both win. Each Run executes in its own
task; idle Workers own no task at all (10,000 idle workers cost only their records).

Lifecycle: ``start()`` opens the store and recovers (runs that were active become INTERRUPTED);
``close(grace_s)`` drains: no new work, active runs get ``grace_s`` to finish and are then
interrupted, their final events are committed and delivered to every subscription, which then
ends (RUNTIME_DRAINING with its last seq at the gRPC edge), and the store is closed. Both are
idempotent.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import httpx

import engine
from runtime_server import errors, logcontext, wire_size
from runtime_server.model import (
    BusyPolicy,
    ConfigBundleRef,
    Diagnostic,
    DiagnosticLevel,
    Event,
    InputCommitted,
    Limits,
    MessageCommitted,
    Page,
    PartialDiscarded,
    Payload,
    ReasoningDelta,
    Run,
    RunError,
    RunFinished,
    RunQueued,
    RunStarted,
    RunState,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptEntry,
    UsageReported,
    Worker,
    WorkerCreated,
    WorkerDeleted,
    WorkerState,
    WorkerStateChanged,
    WorkerStopped,
    Workspace,
    now,
)
from runtime_server.runtime._allocation import Claim
from runtime_server.runtime._budget import (
    KEY_RECORD_BYTES,
    RUN_RECORD_BYTES,
    WORKER_RECORD_BYTES,
    InputQueue,
    MemoryBudget,
)
from runtime_server.runtime._bundles import ConfigBundles
from runtime_server.runtime._eventlog import EventLog, Subscription
from runtime_server.runtime._ids import fingerprint, uuid7
from runtime_server.runtime._lifetime import (
    UsageSummary,
    UsageTotals,
    deleted_mutation,
    load_deleted,
)
from runtime_server.runtime._local import LocalModelProvider, LocalModels
from runtime_server.runtime._observer import MeteredProvider, RuntimeCounters, RuntimeObserver
from runtime_server.runtime._paging import decode_token, encode_token, fitting
from runtime_server.runtime._partial import incomplete_answer
from runtime_server.runtime._policy import HostPolicy
from runtime_server.runtime._profiles import Config, Profile, default_config
from runtime_server.runtime._request_limits import (
    check_config_bundle,
    check_id,
    check_name,
    check_page_token,
    check_reason,
    check_worker_fits,
    check_workspace_size,
)
from runtime_server.runtime._storewatch import StoreState, StoreStateListener, StoreWatch
from runtime_server.runtime._transcripts import Transcripts, TranscriptWindow
from runtime_server.runtime._validation import (
    check_labels,
    check_len,
    check_request_id,
    check_workspace,
)
from runtime_server.runtime._waiting import wait_for_run
from runtime_server.runtime._workspaces import Workspaces
from runtime_server.store import (
    AppendTranscript,
    DeleteWorkerData,
    MemoryStore,
    Mutation,
    PutDiagnostic,
    PutRequestKey,
    PutRun,
    PutWorker,
    Store,
    StoredState,
    text_bytes,
)

log = logging.getLogger("runtime_server")

try:
    VERSION = version("worker-runtime")
except PackageNotFoundError:  # running from a source tree without an install
    VERSION = "0.0.0+source"

MESSAGE_HEADROOM_BYTES = 16 * 1024  # an event's ids, times and framing (< 1 kB) around its text
DIAGNOSTIC_MESSAGE_CHARS = 4096

FEATURES = (
    "single_flight",
    "busy_policy_enqueue",
    "busy_policy_interrupt",
    "idempotent_requests",
    "event_replay",
    "event_subscription",
    "heartbeats",
    "cancellation",
    "usage",
    "diagnostics",
    "workspaces",
    "capabilities",
    "config_bundles",
)

ProviderFactory = Callable[[Profile], engine.Provider]
ToolsFactory = Callable[[Profile, Worker], engine.ToolRegistry]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


class RuntimeState(enum.Enum):
    STARTING = "STARTING"
    SERVING = "SERVING"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    runtime_id: str
    state: RuntimeState
    version: str
    store_kind: str
    started_at: float
    workers_by_state: Mapping[WorkerState, int]
    active_runs: int
    queued_runs: int
    last_seq: int
    oldest_seq: int
    subscribers: int
    limits: Limits
    provider_kinds: tuple[str, ...]
    profiles: tuple[str, ...]
    features: tuple[str, ...]
    usage: engine.Usage  # of the workers held now (finished runs)
    workspace_claims: int = 0
    workspace_claims_read_write: int = 0
    worker_capabilities: tuple[str, ...] = ()
    store_state: StoreState = StoreState.OK  # not OK: changes are refused (see _storewatch)
    store_error: str = ""
    # since the store was created: never decreases (deletes and restarts included; see _lifetime)
    lifetime_usage: engine.Usage = field(default_factory=engine.Usage)
    lifetime_runs: int = 0
    memory_bytes: int = 0  # estimated, against limits.max_memory_bytes (see _budget)


@dataclass(frozen=True, slots=True)
class Accepted:
    """SendInput's answer: the run as accepted, and the seq of the event that accepted it."""

    run: Run
    seq: int


@dataclass(frozen=True, slots=True)
class Created:
    worker: Worker
    seq: int
    initial_run: Run | None = None


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: tuple[Event, ...]
    last_seq: int  # the committed head of the log when read
    oldest_seq: int


@dataclass(slots=True)
class _Slot:
    """A worker's mutable state inside the Runtime."""

    worker: Worker
    # Its length and newest entries only; the rest is read from the store (see _transcripts).
    transcript: TranscriptWindow
    active: Run | None = None
    task: asyncio.Task[None] | None = None
    run_usage: engine.Usage = field(default_factory=engine.Usage)
    cancel_state: RunState | None = None
    cancel_reason: str = ""
    queue: deque[Run] = field(default_factory=deque)
    request_keys: OrderedDict[str, PutRequestKey] = field(default_factory=OrderedDict)
    stopping: bool = False
    run_count: int = 0  # runs ever accepted (finished runs may be forgotten: max_retained_runs)
    stop_task: asyncio.Future[None] | None = None  # shared by concurrent StopWorkers


def _provider_factory(client: httpx.AsyncClient, local: LocalModels) -> ProviderFactory:
    """Providers from profiles; every HTTP provider shares the Runtime's one httpx client. A
    ``local_model`` provider gets its base_url from the local server, started at first use."""

    def build(profile: Profile) -> engine.Provider:
        p = profile.provider

        def make(base_url: str) -> engine.Provider:
            return engine.make_provider(
                p.kind,
                client=client,
                base_url=base_url,
                api_key_env=p.api_key_env or None,
                extra_headers=p.headers,
                idle_timeout_s=p.timeout_s,
                echo_delay_s=float(profile.options.get("delay_ms", 0)) / 1000.0,
                reasoning_field=p.reasoning_field,
                request_deadline_s=profile.request_deadline_s,
            )

        if p.local_model:
            return LocalModelProvider(p.kind, p.local_model, local, make)
        return make(p.base_url)

    return build


def limits_from(overrides: Mapping[str, Any]) -> Limits:
    """Build :class:`Limits` from config overrides, rejecting unknown keys and bad values."""
    known = {f.name: f for f in fields(Limits)}
    defaults = Limits()
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"limits.{key}: unknown limit")
        want = type(getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ValueError(f"limits.{key}: must be a non-negative number")
        values[key] = want(value)
    return replace(defaults, **values)


class Runtime:
    """An embeddable Runtime. Use as ``async with Runtime() as rt: ...`` or start()/close().

    Its methods have the names, parameters and async shape of :class:`runtime_client.RuntimeClient`
    wherever the two overlap — every read is ``async def`` (``get_runtime``, ``get_worker``,
    ``list_workers``, ``iter_workers``, ``get_run``, ``wait_run``, ``get_transcript``,
    ``iter_transcript``, ``list_events``, ``get_usage``, ``list_diagnostics``, ``list_profiles``)
    and ``subscribe`` is iterated with ``async for`` — so code written against one runs against
    the other. What they return are the server's domain values (``runtime_server.model``), not
    the client's models: the two vocabularies are not unified (yet). :meth:`info` stays as a
    synchronous snapshot for in-process callers that cannot await (health, metrics, tests).
    """

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
        self._limits = limits or limits_from(self._config.limits)
        # Host policy (allowed roots, protected paths, capabilities): the argument, else the
        # config's [workspaces]/[capabilities]. A SQLite store's directory is never a workspace.
        policy = policy or self._config.policy
        store_path = getattr(store, "path", None)
        if store_path is not None:
            policy = policy.with_reserved(os.path.dirname(os.path.realpath(store_path)))
        self._workspaces = Workspaces(policy, self._limits)
        # Pages (workers, events, transcript, diagnostics) are bounded by size as well as count, so
        # that a page always fits in one gRPC message: by an upper bound of their encoded size.
        self._page_bytes = wire_size.page_budget(self._limits.max_message_bytes)
        self._store: Store = store or MemoryStore(
            retention_events=self._limits.event_retention_events,
            retention_seconds=self._limits.event_retention_seconds,
            # The log may take half the memory budget; the rest is left to the state.
            retention_bytes=max(1, self._limits.max_memory_bytes // 2),
        )
        lim = self._limits
        self._transcripts = Transcripts(
            self._store,
            window_bytes=lim.transcript_window_bytes,
            cache_bytes=min(lim.transcript_cache_bytes, lim.max_memory_bytes),
        )
        self._budget = MemoryBudget(
            lim.max_memory_bytes, self._store, self._transcripts, self._record_bytes
        )
        # One pooled HTTP client for every provider; created lazily, closed by close().
        self._http: httpx.AsyncClient | None = None
        self._provider_factory = provider_factory
        self._tools_factory: ToolsFactory = tools_factory or self._workspaces.tools_factory()
        self._providers: dict[str, engine.Provider] = {}
        # Servers of bundled local models (local_model providers): started lazily, stopped by close.
        self._local_models = LocalModels(notify=self._on_local_model)
        self._state = RuntimeState.STARTING
        self._runtime_id = ""
        self._started_at = 0.0
        self._slots: dict[str, _Slot] = {}
        self._runs: dict[str, Run] = {}
        self._create_keys: OrderedDict[str, PutRequestKey] = OrderedDict()
        self._finished: deque[str] = deque()  # finished run ids, oldest first (for retention)
        self._run_count = 0
        self._diagnostics: deque[tuple[int, Diagnostic]] = deque(
            maxlen=max(1, self._limits.diagnostics_capacity)
        )
        self._diag_counter = 0
        self._usage = engine.Usage()
        self._deleted = UsageTotals()  # usage and runs of deleted workers (see _lifetime)
        self._log: EventLog | None = None
        self._close_task: asyncio.Task[None] | None = None
        self._store_watch = StoreWatch(self)
        self._open_tails: Mapping[str, list[TranscriptEntry]] = {}  # _load -> _recover
        self._observer: RuntimeObserver | None = None  # operators' metrics (_observer)
        self._bundles = ConfigBundles(self)  # config bundles and profile snapshots (_bundles)

    # --- lifecycle ---

    async def __aenter__(self) -> Runtime:
        """Start the Runtime (see :meth:`start`)."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Close the Runtime with no grace (see :meth:`close`)."""
        await self.close()

    async def start(self) -> None:
        """Open the store and recover what it holds (runs that were active become INTERRUPTED);
        the Runtime serves once the recovery is committed. Idempotent."""
        if self._state is not RuntimeState.STARTING or self._log is not None:
            return
        stored = await self._store.open(uuid7())
        self._runtime_id = stored.runtime_id
        self._log = EventLog(
            self._store,
            last_seq=stored.last_seq,
            buffer_limit=max(1, self._limits.subscriber_buffer_events),
        )
        self._log.observer = self._observer
        logcontext.set_runtime_id(self._runtime_id)
        self._store.set_failure_listener(self._store_watch.on_failure)
        self._load(stored)
        # The diagnostics ring survives restarts: the store keeps the newest capacity of them.
        for number, diag in await self._store.read_diagnostics():
            self._diagnostics.append((number, diag))  # the deque keeps the newest capacity
            self._diag_counter = max(self._diag_counter, number)
        self._recover()
        # Serve only once the recovery is committed (flush raises if the store cannot commit).
        await self._store.flush()
        self._started_at = now()
        self._state = RuntimeState.SERVING

    def _reset_state(self) -> None:
        """Forget the workers and runs held in memory (before ``_load`` rebuilds them from the
        store after a store failure): everything ``_load`` fills."""
        self._slots = {}
        self._runs = {}
        self._create_keys = OrderedDict()
        self._finished = deque()
        self._run_count = 0
        self._usage = engine.Usage()
        self._transcripts.reset()  # windows and queues are rebuilt with the slots
        self._budget.queued_bytes = 0

    def _load(self, stored: StoredState) -> None:
        """Workers, runs, transcripts and keys as the store has them (at start, and after a
        store failure). Transcripts: lengths only, and the open tails for ``_recover``."""
        lengths = stored.transcript_lengths
        self._open_tails = stored.transcripts
        for worker in stored.workers:
            self._slots[worker.worker_id] = self._new_slot(worker, lengths.get(worker.worker_id, 0))
        lim = self._limits
        for key in stored.request_keys:  # oldest first: the same bounded LRU as before the stop
            if key.scope == "create":
                self._remember(self._create_keys, key, lim.idempotency_keys_create)
            elif key.scope in self._slots:
                slot_keys = self._slots[key.scope].request_keys
                self._remember(slot_keys, key, lim.idempotency_keys_per_worker)
        for run in sorted(stored.runs, key=lambda r: (r.finished_at or r.created_at, r.run_id)):
            run = _without_input(run)  # runs are kept as metadata; the store has the text
            self._runs[run.run_id] = run
            if run.worker_id in self._slots:
                self._slots[run.worker_id].run_count += 1
            self._run_count += 1
            if run.state.terminal:
                self._retire(run)
        for slot in self._slots.values():
            self._usage = self._usage + slot.worker.usage
        self._deleted = load_deleted(stored.meta)
        self._bundles.load(stored)

    def _recover(self, why: str = "the runtime stopped", *, diagnose: bool = True) -> None:
        """Runs left QUEUED or RUNNING by a previous process become INTERRUPTED; workers IDLE;
        tool calls the crash left without a result get a synthetic one (as a cancelled run's do),
        so the transcript is valid for the next turn."""
        log_ = self._require_log()
        last_seq = log_.last_assigned_seq
        tails, self._open_tails = self._open_tails, {}  # from _load; not kept
        for wid, slot in self._slots.items():
            self._close_dangling_calls(slot, tails.get(wid, []))
        interrupted = 0
        for run in list(self._runs.values()):
            if run.state.terminal:
                continue
            interrupted += 1
            where = "queued" if run.state is RunState.QUEUED else "active"
            owner = self._slots.get(run.worker_id)
            if owner is not None and run.usage != engine.Usage():
                # Tokens the run spent before the crash (saved with each UsageReported) count.
                owner.worker = replace(owner.worker, usage=owner.worker.usage + run.usage)
                self._usage = self._usage + run.usage
                log_.append(run.worker_id, "", [], [PutWorker(owner.worker)])
            done = replace(
                run,
                state=RunState.INTERRUPTED,
                finished_at=now(),
                error=RunError("INTERRUPTED", f"{why} while this run was {where}"),
                input_text="",
            )
            self._runs[run.run_id] = done
            self._retire(done)
            log_.append(run.worker_id, run.run_id, [RunFinished(done)], [PutRun(done)])
        for slot in self._slots.values():
            w = slot.worker
            if w.state is WorkerState.RUNNING or w.active_run_id:
                state = WorkerState.STOPPED if w.state is WorkerState.STOPPED else WorkerState.IDLE
                idle = replace(w, state=state, active_run_id="")
                slot.worker = idle
                changed = [WorkerStateChanged(w.state, state)] if state is not w.state else []
                log_.append(w.worker_id, "", changed, [PutWorker(idle)])
        if diagnose and (self._slots or interrupted):
            self._diagnose(
                DiagnosticLevel.INFO,
                "RECOVERED",
                f"recovered {_count(len(self._slots), 'worker')}; "
                f"{_count(interrupted, 'run')} marked INTERRUPTED; "
                f"event log continues after seq {last_seq}",
            )
        # Claims follow the workers just loaded (at start, and after a store failure rolled
        # memory back to the committed state).
        self._reclaim()

    def _reclaim(self) -> None:
        """Rebuild the allocation manager's claims from the live workers, in creation order; a
        worker whose paths now conflict or fall outside the host policy (a symlink retargeted
        while the runtime was down) is stopped with a diagnostic, never left sharing a path
        read-write or reaching one the host does not allow."""
        log_ = self._require_log()
        for slot in self._slots.values():
            w = slot.worker
            if w.tools is None:  # stored before effective tools were recorded
                tools = self._workspaces.tools_of(self._config.profiles.get(w.profile), w)
                slot.worker = replace(w, tools=tools)
        losers = self._workspaces.rebuild([s.worker for s in self._slots.values()])
        for worker_id, refusal in losers:
            slot = self._slots[worker_id]
            previous = slot.worker.state
            slot.worker = replace(slot.worker, state=WorkerState.STOPPED, active_run_id="")
            what = "conflict" if refusal.reason == "WORKSPACE_CONFLICT" else "not allowed"
            reason = f"workspace {what} at start: {refusal.message}"
            log_.append(
                worker_id,
                "",
                [WorkerStateChanged(previous, WorkerState.STOPPED), WorkerStopped(reason)],
                [PutWorker(slot.worker)],
            )
            self._diagnose(DiagnosticLevel.ERROR, refusal.reason, reason, worker_id)

    def _close_dangling_calls(self, slot: _Slot, tail: list[TranscriptEntry]) -> None:
        log_ = self._require_log()
        calls: list[tuple[TranscriptEntry, engine.ToolCall]] = []
        for entry in tail:  # the open tail (from the last non-tool message): all that matters
            message = entry.message  # only the tail can be open: what follows a call closes it
            if message.role is not engine.Role.TOOL:
                calls = [(entry, call) for call in message.tool_calls]
            else:
                calls = [(e, c) for e, c in calls if c.call_id != message.tool_call_id]
        wid = slot.worker.worker_id
        for entry, call in calls:
            text = "interrupted: the runtime stopped before this tool call finished"
            result = engine.Message(
                engine.Role.TOOL, text=text, tool_call_id=call.call_id, tool_name=call.name,
                is_error=True,
            )  # fmt: skip
            closing = TranscriptEntry(
                worker_id=wid, index=len(slot.transcript), run_id=entry.run_id, created_at=now(),
                message=result,
            )  # fmt: skip
            slot.transcript.append(closing)
            log_.append(
                wid,
                entry.run_id,
                [ToolCallFinished(call.call_id, call.name, text, True), MessageCommitted(closing)],
                [AppendTranscript(closing)],
            )

    async def close(self, grace_s: float = 0.0) -> None:
        """Drain and stop: no new work; active runs get ``grace_s`` seconds, then are interrupted
        (keeping their partial answers); subscriptions end; the store is flushed and closed. Safe
        to call more than once (later calls wait for the first)."""
        if self._close_task is None:
            self._close_task = asyncio.ensure_future(self._close(grace_s))
        await asyncio.shield(self._close_task)

    async def _close(self, grace_s: float) -> None:
        if self._log is None:
            self._state = RuntimeState.STOPPED
            return
        self._state = RuntimeState.DRAINING
        await self._store_watch.close()
        tasks = [s.task for s in self._slots.values() if s.task is not None and not s.task.done()]
        if tasks and grace_s > 0:
            await asyncio.wait(tasks, timeout=grace_s)
        for slot in self._slots.values():
            self._drop_queue(slot, RunState.INTERRUPTED, "the runtime shut down")
            self._cancel_active(slot, RunState.INTERRUPTED, "the runtime shut down")
        tasks = [s.task for s in self._slots.values() if s.task is not None and not s.task.done()]
        if tasks:
            await asyncio.wait(tasks)
        errors_: list[BaseException] = []
        # The runs' final events (RunFinished INTERRUPTED, ...) are committed and published to
        # every live subscription first; then subscriptions end, each after handing over what it
        # holds (from memory: the gRPC server's grace lets streams send it), and the store closes
        # once no read is in flight and none can start. A store failure already reported (the
        # store is failing) is said once, by the store watch, not once per step.
        try:
            await self._store.flush()
        except Exception as exc:  # keep unwinding; report below
            if not self._store_watch.reported(exc):
                errors_.append(exc)
        self._log.close_all()
        await self._log.stop_reads()
        try:
            await self._store.close()
        except Exception as exc:
            if not self._store_watch.reported(exc):
                errors_.append(exc)
        for provider in self._providers.values():
            try:
                await provider.aclose()
            except Exception as exc:
                errors_.append(exc)
        try:
            await self._local_models.aclose()
        except Exception as exc:
            errors_.append(exc)
        if self._http is not None:
            await self._http.aclose()
        self._state = RuntimeState.STOPPED
        for failure in errors_:
            log.error("error during shutdown: %s", failure)

    @property
    def state(self) -> RuntimeState:
        """STARTING, SERVING, DRAINING or STOPPED."""
        return self._state

    def set_observer(self, observer: RuntimeObserver | None) -> None:
        """Report runs, diagnostics, provider requests and commits to ``observer`` (before
        :meth:`start`; see ``runtime_server.runtime._observer``)."""
        if self._log is not None:
            raise errors.FailedPrecondition("set the observer before the runtime starts")
        self._observer = observer

    def counters(self) -> RuntimeCounters:
        """Monotonic counters since start, for operators' metrics."""
        log_ = self._require_log()
        return RuntimeCounters(
            events_committed=log_.committed_seq - log_.start_seq,
            subscriber_cuts={"lagging": log_.cuts_lagging, "shutdown": log_.cuts_shutdown},
        )

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

    @property
    def store_state(self) -> StoreState:
        """OK, FAILING (changes refused while the store retries) or DAMAGED (until a restart)."""
        return self._store_watch.state

    def watch_store(self, listener: StoreStateListener) -> None:
        """``listener(state)`` is called on the loop when the store's state changes (the gRPC
        layer switches health with it)."""
        self._store_watch.add_listener(listener)

    # --- management ---

    def info(self) -> RuntimeInfo:
        """A synchronous snapshot of :meth:`get_runtime` (for callers that cannot await)."""
        log_ = self._require_log()
        by_state = dict.fromkeys(WorkerState, 0)
        active = queued = 0
        for slot in self._slots.values():
            by_state[slot.worker.state] += 1
            active += slot.active is not None
            queued += len(slot.queue)
        claims, rw_claims = self._workspaces.allocations.counts()
        return RuntimeInfo(
            runtime_id=self._runtime_id,
            state=self._state,
            version=VERSION,
            store_kind=self._store.kind,
            started_at=self._started_at,
            workers_by_state=by_state,
            active_runs=active,
            queued_runs=queued,
            last_seq=log_.committed_seq,
            oldest_seq=self._store.oldest_seq(),
            subscribers=log_.subscriber_count,
            limits=self._limits,
            # what this runtime can run (a provider of any of these kinds may be configured);
            # the configured providers show through the profiles
            provider_kinds=tuple(engine.PROVIDER_KINDS),
            profiles=tuple(sorted(self._config.profiles)),
            features=FEATURES,
            usage=self._usage,
            workspace_claims=claims,
            workspace_claims_read_write=rw_claims,
            worker_capabilities=self._workspaces.policy.allowed_capabilities,
            store_state=self._store_watch.state,
            store_error=self._store_watch.error,
            lifetime_usage=self._usage + self._deleted.usage,
            lifetime_runs=self._run_count + self._deleted.runs,
            memory_bytes=self._budget.held(),
        )

    async def get_runtime(self) -> RuntimeInfo:
        """Summary, state, version, store, worker counts, active runs, limits, capabilities and
        usage (of the workers held now, and lifetime)."""
        return self.info()

    async def list_workspace_claims(
        self, *, worker_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> Page[Claim]:
        """Claims of live workers (ordered by worker creation), optionally of one worker."""
        if worker_id:
            worker_id = self._slot(worker_id).worker.worker_id
        check_page_token(page_token, self._limits)
        # claims are weighed in characters: a quarter of the byte budget keeps 4-byte ones sound
        return self._workspaces.claims_page(
            worker_id, self._page_size(page_size), page_token, self._page_bytes // 4
        )

    async def list_profiles(self) -> tuple[Profile, ...]:
        """Every profile, by name."""
        return tuple(self._config.profiles[name] for name in sorted(self._config.profiles))

    async def list_diagnostics(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> Page[Diagnostic]:
        """One page of the diagnostics ring, newest first (bounded by diagnostics_capacity; it
        survives restarts with a persistent store)."""
        size = self._page_size(page_size)
        check_page_token(page_token, self._limits)
        newest_first = list(reversed(self._diagnostics))
        start = 0
        if page_token:
            before = decode_token(page_token, "d")
            start = next(
                (i for i, (n, _) in enumerate(newest_first) if n < before), len(newest_first)
            )
        chunk = newest_first[start : start + size]
        chunk = chunk[: fitting(chunk, lambda d: wire_size.diagnostic_size(d[1]), self._page_bytes)]
        more = start + len(chunk) < len(newest_first)
        token = encode_token("d", chunk[-1][0]) if more and chunk else ""
        return Page(tuple(d for _, d in chunk), token, len(newest_first))

    def _on_local_model(self, code: str, message: str) -> None:
        level = DiagnosticLevel.INFO if code == "LOCAL_MODEL_STARTED" else DiagnosticLevel.WARNING
        self._diagnose(level, code, message)

    def _diagnose(
        self, level: DiagnosticLevel, code: str, message: str, worker_id: str = "", run_id: str = ""
    ) -> None:
        # a diagnostic is stored and sent in pages and events: its text (an exception's, a
        # provider's) is cut to a size that can never crowd a message
        if len(message) > DIAGNOSTIC_MESSAGE_CHARS:
            message = message[: DIAGNOSTIC_MESSAGE_CHARS - 1] + "\u2026"
        diag = Diagnostic(level, code, message, now(), worker_id, run_id)
        if self._observer is not None:
            self._observer.diagnostic(level.value, code)
        self._diag_counter += 1
        self._diagnostics.append((self._diag_counter, diag))
        if self._log is not None and not self._log.store_closed:  # never write a closed store
            keep = max(1, self._limits.diagnostics_capacity)
            self._log.append(
                worker_id, run_id, [diag], [PutDiagnostic(self._diag_counter, diag, keep)]
            )
        log.log(
            {"INFO": logging.INFO, "WARNING": logging.WARNING}.get(level.value, logging.ERROR),
            "%s: %s",
            code,
            message,
        )

    # --- catalog ---

    async def create_worker(
        self,
        *,
        worker_id: str = "",
        profile: str = "",
        display_name: str = "",
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        workspace: Workspace | None = None,
        config_bundle: ConfigBundleRef | None = None,
        initial_input: str = "",
        capabilities: tuple[str, ...] | list[str] = (),
    ) -> Created:
        """Create a worker (profile "" = the built-in ``echo``), optionally starting a run on
        ``initial_input``. Repeating a ``request_id`` returns the first result."""
        log_ = self._check_serving()
        lim = self._limits
        labels = dict(labels or {})
        if worker_id:  # one spelling per UUID: other spellings are refused, never aliased
            check_id("worker_id", worker_id, lim)
        check_name("profile", profile, lim)
        profile = profile or "echo"
        if config_bundle is None and profile not in self._config.profiles:
            raise errors.ProfileNotFound(profile)
        check_len("display_name", display_name, lim.max_display_name_chars)
        check_request_id(request_id, lim)
        check_labels(labels, lim)
        check_workspace_size(workspace, lim)
        check_config_bundle(config_bundle, lim)
        check_workspace(workspace)
        if config_bundle is not None and not config_bundle.id:
            raise errors.InvalidArgument("config_bundle.id", "must not be empty")
        if initial_input:
            # checked here, before the worker exists: SendInput's own check would come too late
            if not initial_input.strip():
                raise errors.InvalidArgument("initial_input", "must not be blank")
            check_len("initial_input", initial_input, lim.max_input_chars)
        bundled = await self._bundles.resolve(config_bundle, profile)  # None without a bundle
        fp = fingerprint(
            worker_id, profile, display_name, sorted(labels.items()), workspace, config_bundle,
            initial_input, *([list(capabilities)] if capabilities else []),
        )  # fmt: skip
        if request_id:
            prior = self._create_keys.get(request_id)
            if prior is not None:
                if prior.fingerprint != fp:
                    raise errors.IdempotencyConflict(request_id)
                await log_.wait_committed(prior.seq)
                slot = self._slots.get(prior.result)
                if slot is None:
                    raise errors.WorkerNotFound(prior.result)
                run = None
                if initial_input:
                    key = slot.request_keys.get(_initial_key(request_id))
                    run = self._runs.get(key.result) if key else None
                return Created(self._snapshot(slot), prior.seq, run)
        # Host policy, paths and capabilities: after the idempotency lookup (a retry returns the
        # first result even if a directory has gone since), and synchronous up to the claim.
        prepared = self._workspaces.prepare(
            self._bundles.confirm(bundled) or self._config.profiles[profile],
            workspace,
            tuple(capabilities),
        )
        if worker_id and worker_id in self._slots:
            raise errors.WorkerAlreadyExists(worker_id)
        if len(self._slots) >= lim.max_workers:
            raise errors.TooManyWorkers(lim.max_workers)
        self._budget.admit(
            WORKER_RECORD_BYTES + (text_bytes(initial_input) if initial_input else 0)
        )
        worker = Worker(
            worker_id=worker_id or uuid7(),
            runtime_id=self._runtime_id,
            state=WorkerState.IDLE,
            profile=profile,
            display_name=display_name,
            labels=labels,
            created_at=now(),
            workspace=workspace,
            config_bundle=config_bundle,
            capabilities=prepared.capabilities,
            tools=prepared.tools,
        )
        check_worker_fits(worker, lim, MESSAGE_HEADROOM_BYTES)
        # Check-and-claim with no await since the checks above: of N concurrent creates on one
        # path exactly one wins (WORKSPACE_CONFLICT for the others).
        self._workspaces.allocations.claim(worker.worker_id, prepared.places)
        slot = self._new_slot(worker)
        self._slots[worker.worker_id] = slot
        mutations: list[Mutation] = [PutWorker(worker)]
        mutations += self._bundles.attach(bundled, worker.worker_id)
        seq = log_.last_assigned_seq + 1
        if request_id:
            key = PutRequestKey("create", request_id, fp, worker.worker_id, seq)
            mutations.append(key)
            self._remember(self._create_keys, key, lim.idempotency_keys_create)
        log_.append(worker.worker_id, "", [WorkerCreated(worker)], mutations)
        await log_.wait_committed(seq)
        run = None
        if initial_input:
            # the derived key is longer than request_id: it must not meet the callers' limit
            accepted = await self._send_input(
                worker.worker_id,
                initial_input,
                _initial_key(request_id) if request_id else "",
                BusyPolicy.REJECT,
            )
            run = accepted.run
        return Created(self._snapshot(slot), seq, run)

    async def get_worker(self, worker_id: str) -> Worker:
        """The worker as it is now."""
        return self._snapshot(self._slot(worker_id))

    async def list_workers(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Page[Worker]:
        """One page of workers by id; ``state``/``labels`` filter (a worker must carry all the
        labels)."""
        size = self._page_size(page_size)
        check_page_token(page_token, self._limits)
        after = decode_token(page_token, "w") if page_token else ""
        selector = dict(labels or {})
        check_labels(selector, self._limits)

        def keep(slot: _Slot) -> bool:
            w = slot.worker
            if state is not None and w.state is not state:
                return False
            return all(w.labels.get(k) == v for k, v in selector.items())

        matching = sorted(wid for wid, s in self._slots.items() if keep(s))
        ids = [wid for wid in matching if wid > after]
        chunk = [self._snapshot(self._slots[w]) for w in ids[:size]]
        chunk = chunk[: fitting(chunk, wire_size.worker_size, self._page_bytes)]
        token = encode_token("w", chunk[-1].worker_id) if len(ids) > len(chunk) else ""
        # total is the whole filtered list (as in ListDiagnostics), not what is left after the token
        return Page(tuple(chunk), token, len(matching))

    async def iter_workers(
        self,
        *,
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> AsyncGenerator[Worker, None]:
        """Every matching worker, page by page."""
        token = ""
        while True:
            page = await self.list_workers(
                page_size=page_size, page_token=token, state=state, labels=labels
            )
            for worker in page.items:
                yield worker
            token = page.next_page_token
            if not token:
                return

    async def stop_worker(self, worker_id: str, *, reason: str = "") -> Worker:
        """Cancel the active run (keeping its partial answer), drop queued inputs, stop the worker
        for good. Idempotent; concurrent calls all answer once the stop is committed."""
        reason = reason or "stopped by request"
        self._require_log()
        slot = self._slot(worker_id)
        check_reason("reason", reason, self._limits)
        self._store_watch.check()
        if slot.stop_task is None:
            if slot.worker.state is WorkerState.STOPPED:  # stopped before a restart
                return self._snapshot(slot)
            slot.stopping = True
            self._drop_queue(slot, RunState.CANCELLED, "the worker was stopped")
            self._cancel_active(slot, RunState.CANCELLED, "the worker was stopped")
            slot.stop_task = asyncio.ensure_future(self._stop(slot, reason))
        # Every caller, the first or a concurrent one, answers once the stop is done and
        # committed; the shield lets the stop finish even if its caller goes away.
        await asyncio.shield(slot.stop_task)
        return self._snapshot(slot)

    async def _stop(self, slot: _Slot, reason: str) -> None:
        log_ = self._require_log()
        await self._wait_task(slot)
        previous = slot.worker.state
        stopped = replace(slot.worker, state=WorkerState.STOPPED, active_run_id="")
        slot.worker = stopped
        # The run is over (no tool can still write): the worker's paths are free again.
        self._workspaces.allocations.release(stopped.worker_id)
        events = log_.append(
            stopped.worker_id,
            "",
            [WorkerStateChanged(previous, WorkerState.STOPPED), WorkerStopped(reason)],
            [PutWorker(stopped)],
        )
        await log_.wait_committed(events[-1].seq)

    async def delete_worker(self, worker_id: str) -> None:
        """Stop the worker and remove it with its transcript, runs and keys (its events age out
        with the log; its usage stays in the lifetime totals)."""
        log_ = self._require_log()
        slot = self._slot(worker_id)
        worker_id = slot.worker.worker_id
        await self.stop_worker(worker_id, reason="deleted")
        self._store_watch.check()  # (a store failure since then replaced the slots)
        if self._slots.get(worker_id) is not slot:
            return  # a concurrent delete won
        del self._slots[worker_id]
        self._bundles.forget(slot.worker)
        self._transcripts.drop(slot.transcript)
        self._workspaces.allocations.release(worker_id)
        # Runtime-wide usage is the sum over the workers it holds (as rebuilt on restart): a
        # deleted worker's usage leaves with its data.
        self._usage = self._usage - slot.worker.usage
        self._run_count -= slot.run_count
        # ... while the lifetime totals keep it (recorded with the delete itself)
        self._deleted = self._deleted.plus(slot.worker.usage, slot.run_count)
        for run_id in [r.run_id for r in self._runs.values() if r.worker_id == worker_id]:
            del self._runs[run_id]
        events = log_.append(
            worker_id,
            "",
            [WorkerDeleted()],
            [DeleteWorkerData(worker_id), deleted_mutation(self._deleted)],
        )
        await log_.wait_committed(events[-1].seq)

    def _slot(self, worker_id: str) -> _Slot:
        check_id("worker_id", worker_id, self._limits)
        slot = self._slots.get(worker_id)
        if slot is None:
            raise errors.WorkerNotFound(worker_id)
        return slot

    def _snapshot(self, slot: _Slot) -> Worker:
        w = slot.worker
        if w.queued_runs != len(slot.queue):
            w = replace(w, queued_runs=len(slot.queue))
        return w

    # --- interaction ---

    async def send_input(
        self,
        worker_id: str,
        text: str,
        *,
        request_id: str = "",
        busy_policy: BusyPolicy = BusyPolicy.REJECT,
    ) -> Accepted:
        """Start (or queue, or interrupt with) a run. ``Accepted.seq`` is the seq of its RunQueued
        event: subscribe with ``after_seq=accepted.seq`` to see everything the run does."""
        check_request_id(request_id, self._limits)
        return await self._send_input(worker_id, text, request_id, busy_policy)

    async def _send_input(
        self, worker_id: str, text: str, request_id: str, busy_policy: BusyPolicy
    ) -> Accepted:
        log_ = self._check_serving()
        lim = self._limits
        slot = self._slot(worker_id)
        if not text.strip():
            raise errors.InvalidArgument("text", "must not be empty")
        check_len("text", text, lim.max_input_chars)
        # The input travels in one event (InputCommitted): it must fit one message. Encode only
        # when the cheap bound (4 bytes a character) says it might not.
        room = lim.max_message_bytes - MESSAGE_HEADROOM_BYTES
        if len(text) * 4 > room and len(text.encode("utf-8", "surrogatepass")) > room:
            raise errors.InvalidArgument(
                "text", f"is larger than one message can carry ({room} bytes of UTF-8)"
            )
        fp = fingerprint(text, busy_policy.value)
        if request_id:
            prior = slot.request_keys.get(request_id)
            if prior is not None:
                if prior.fingerprint != fp:
                    raise errors.IdempotencyConflict(request_id)
                await log_.wait_committed(prior.seq)
                return Accepted(self._runs.get(prior.result) or _gone(prior), prior.seq)
        if slot.worker.state is WorkerState.STOPPED or slot.stopping:
            raise errors.WorkerStopped(slot.worker.worker_id)
        worker_id = slot.worker.worker_id
        run_id, created = uuid7(), now()
        run = Run(run_id, worker_id, RunState.QUEUED, created, input_text=text)
        # Events carry the run as metadata: the text travels once, in InputCommitted.
        payloads: list[Payload] = [RunQueued(Run(run_id, worker_id, RunState.QUEUED, created))]
        mutations: list[Mutation] = [PutRun(run)]
        start = slot.active is None
        if not start:
            if busy_policy is BusyPolicy.REJECT:
                assert slot.active is not None
                busy = slot.active.run_id
                # Name only a committed run: if its batch fails, this caller hears STORE_FAILURE.
                await log_.wait_committed(log_.last_assigned_seq)
                raise errors.WorkerBusy(worker_id, busy)
            if len(slot.queue) >= lim.max_queue_per_worker:
                raise errors.QueueFull(worker_id, lim.max_queue_per_worker)
        self._budget.admit(text_bytes(text) + RUN_RECORD_BYTES)
        seq = log_.last_assigned_seq + 1
        if request_id:
            key = PutRequestKey(worker_id, request_id, fp, run.run_id, seq)
            mutations.append(key)
            self._remember(slot.request_keys, key, lim.idempotency_keys_per_worker)
        self._runs[run.run_id] = run
        slot.run_count += 1
        self._run_count += 1
        accepted = run
        if start:
            accepted = self._begin(slot, run, payloads, mutations)
        elif busy_policy is BusyPolicy.INTERRUPT:
            slot.queue.appendleft(run)
        else:
            slot.queue.append(run)
        events = log_.append(worker_id, run.run_id, payloads, mutations)
        if start:
            self._spawn(slot, accepted)
        elif busy_policy is BusyPolicy.INTERRUPT:
            self._cancel_active(slot, RunState.CANCELLED, "interrupted by a new input")
        await log_.wait_committed(events[-1].seq)
        return Accepted(accepted, seq)

    def _begin(
        self, slot: _Slot, run: Run, payloads: list[Payload], mutations: list[Mutation]
    ) -> Run:
        """Make ``run`` the active run: adds its start events/mutations to the batch."""
        # Its text goes into the transcript (and stays in the store's record of the run): the
        # run itself is kept as metadata only from now on.
        started = replace(run, state=RunState.RUNNING, started_at=now(), input_text="")
        self._runs[run.run_id] = started
        entry = TranscriptEntry(
            worker_id=slot.worker.worker_id,
            index=len(slot.transcript),
            run_id=run.run_id,
            message=engine.Message(engine.Role.USER, text=run.input_text),
            created_at=now(),
        )
        slot.transcript.append(entry)
        slot.active = started
        slot.run_usage = engine.Usage()
        slot.cancel_state = None
        slot.cancel_reason = ""
        previous = slot.worker.state
        slot.worker = replace(slot.worker, state=WorkerState.RUNNING, active_run_id=run.run_id)
        payloads += [RunStarted(started), InputCommitted(entry)]
        mutations += [PutRun(started), AppendTranscript(entry), PutWorker(slot.worker)]
        if previous is not WorkerState.RUNNING:
            payloads.append(WorkerStateChanged(previous, WorkerState.RUNNING))
        return started

    def _spawn(self, slot: _Slot, run: Run) -> None:
        task = asyncio.create_task(self._execute(slot, run), name=f"run-{run.run_id}")
        slot.task = task
        # If the task is cancelled before it ever runs, its body (and its finally) never executes:
        # the done-callback still finishes the run, exactly once.
        task.add_done_callback(lambda _t: self._finish(slot, run.run_id))

    async def _execute(self, slot: _Slot, run: Run) -> None:
        worker = slot.worker
        # this task's own context (a copy): its log lines name the run, not the call that began it
        logcontext.worker_id.set(run.worker_id)
        logcontext.run_id.set(run.run_id)
        logcontext.request_id.set("")
        logcontext.rpc.set("")
        profile = self._bundles.profile_of(worker)  # a bundle worker's snapshot, or the host's
        state, error, stop_reason = RunState.COMPLETED, None, ""
        try:
            if profile is None:
                raise engine.ConfigurationError(f"profile {worker.profile!r} no longer exists")
            provider = self._provider(profile)
            tools = self._tools_factory(profile, worker)
            turn = engine.TurnConfig(
                model=profile.model,
                system=profile.system_prompt,
                max_tokens=profile.max_tokens,
                temperature=profile.temperature,
                options={k: v for k, v in profile.options.items() if k != "delay_ms"},
                max_tool_rounds=profile.max_tool_rounds,
                tool_timeout_s=profile.tool_timeout_s,
                max_length_continuations=profile.max_length_continuations,
                retry=engine.RetryPolicy(max_attempts=max(1, profile.provider.max_retries + 1)),
                examples=profile.examples,
                prefill=profile.prefill,
                prefill_options=profile.prefill_options,
            )
            log_ = self._require_log()
            history = await self._transcripts.history(
                slot.transcript, lambda: log_.wait_committed(log_.last_assigned_seq)
            )
            # run_turn copies the history before it appends to it: passing the list is safe
            result = await engine.run_turn(
                provider, turn, history, emit=self._emitter(slot, run.run_id, tools), tools=tools
            )
            stop_reason = result.stop_reason.value
            if result.stop_reason is engine.StopReason.LIMIT_REACHED:
                state = RunState.FAILED
                error = RunError(
                    "LIMIT_REACHED",
                    f"the run reached its limit of {profile.max_tool_rounds} tool rounds",
                )
        except asyncio.CancelledError:
            if slot.cancel_state is None:  # not ours (loop shutdown): record, then let it through
                self._finish(slot, run.run_id, RunState.INTERRUPTED, "cancelled from outside")
                raise
            state, error = slot.cancel_state, None
        except engine.EngineError as exc:
            state, error = RunState.FAILED, RunError(exc.code, exc.message)
        except Exception as exc:  # a bug must fail the run, never leave it RUNNING
            log.exception("run %s failed unexpectedly", run.run_id)
            state, error = RunState.FAILED, RunError("INTERNAL", f"{type(exc).__name__}: {exc}")
            self._diagnose(
                DiagnosticLevel.ERROR, "RUN_CRASHED", error.message, run.worker_id, run.run_id
            )
        self._finish(slot, run.run_id, state, "", error, stop_reason)

    def _emitter(
        self, slot: _Slot, run_id: str, tools: engine.ToolRegistry | None = None
    ) -> engine.Emit:
        log_ = self._require_log()
        append_one = log_.append_one
        worker_id = slot.worker.worker_id

        def on_text(ev: Any) -> None:
            append_one(worker_id, run_id, TextDelta(ev.text))

        def on_reasoning(ev: Any) -> None:
            append_one(worker_id, run_id, ReasoningDelta(ev.text))

        def on_tool_start(ev: Any) -> None:
            append_one(worker_id, run_id, ToolCallStarted(ev.call_id, ev.name, ev.arguments))
            if tools is not None and tools.get(ev.name) is None:
                # the engine answers it with an error result; the operator learns of it here
                self._diagnose(
                    DiagnosticLevel.WARNING,
                    "TOOL_NOT_ALLOWED",
                    f"the model asked for tool {ev.name[:64]!r}, which is not among this "
                    f"worker's tools ({', '.join(slot.worker.tools or ()) or 'none'})",
                    worker_id,
                    run_id,
                )

        def on_tool_end(ev: Any) -> None:
            append_one(
                worker_id, run_id, ToolCallFinished(ev.call_id, ev.name, ev.result, ev.is_error)
            )

        def on_message(ev: Any) -> None:
            entry = TranscriptEntry(
                worker_id=worker_id, index=len(slot.transcript), run_id=run_id, created_at=now(),
                message=ev.message,
            )  # fmt: skip
            slot.transcript.append(entry)
            log_.append(worker_id, run_id, [MessageCommitted(entry)], [AppendTranscript(entry)])

        def on_usage(ev: Any) -> None:
            # Once per model request: keep the run record current (GetRun shows usage so far) and
            # durable, so tokens spent before a crash are not lost (recovery adds them to the
            # worker).
            slot.run_usage = slot.run_usage + ev.usage
            active = slot.active
            if active is None or active.run_id != run_id:
                append_one(worker_id, run_id, UsageReported(ev.usage))
                return
            active = slot.active = replace(active, usage=slot.run_usage)
            self._runs[run_id] = active
            log_.append(worker_id, run_id, [UsageReported(ev.usage)], [PutRun(active)])

        def on_partial(ev: Any) -> None:
            # a cancel cut the stream: keep what the model said (see _partial)
            on_message(engine.MessageCompleted(incomplete_answer(ev.message, slot.cancel_state)))

        def on_discard(ev: Any) -> None:
            append_one(worker_id, run_id, PartialDiscarded(ev.reason))

        def on_notice(ev: Any) -> None:
            self._diagnose(DiagnosticLevel.WARNING, ev.code, ev.message, worker_id, run_id)

        handlers: dict[type, Callable[[Any], None]] = {
            engine.TextDelta: on_text,
            engine.ReasoningDelta: on_reasoning,
            engine.ToolCallStarted: on_tool_start,
            engine.ToolCallFinished: on_tool_end,
            engine.MessageCompleted: on_message,
            engine.UsageReported: on_usage,
            engine.PartialDiscarded: on_discard,
            engine.PartialMessage: on_partial,
            engine.Notice: on_notice,
        }

        def emit(event: engine.TurnEvent) -> None:
            handlers[type(event)](event)

        return emit

    def _finish(
        self,
        slot: _Slot,
        run_id: str,
        state: RunState | None = None,
        reason: str = "",
        error: RunError | None = None,
        stop_reason: str = "",
    ) -> None:
        """End the active run ``run_id`` (exactly once) and start the next queued input, if any."""
        active = slot.active
        if active is None or active.run_id != run_id or self._log is None:
            return
        if state is None:  # from the done-callback: the body never ran to its end
            state = slot.cancel_state or RunState.INTERRUPTED
        if error is None and state in (RunState.CANCELLED, RunState.INTERRUPTED):
            error = RunError(state.value, slot.cancel_reason or reason or state.value.lower())
        done = replace(
            active,
            state=state,
            finished_at=now(),
            usage=slot.run_usage,
            error=error,
            stop_reason=stop_reason,
        )
        self._runs[run_id] = done
        self._retire(done)
        self._run_ended(done)
        self._usage = self._usage + slot.run_usage
        self._transcripts.release(slot.worker.worker_id)
        slot.active = None
        slot.task = None
        worker = replace(slot.worker, usage=slot.worker.usage + slot.run_usage, active_run_id="")
        slot.worker = worker
        payloads: list[Payload] = [RunFinished(done)]
        mutations: list[Mutation] = [PutRun(done)]
        nxt = None
        if slot.queue and not slot.stopping and self._state is RuntimeState.SERVING:
            # The next run's start events carry its own run_id, so they are a batch of their own
            # (the first one also records the worker's new usage with the run that produced it).
            self._log.append(worker.worker_id, run_id, payloads, [*mutations, PutWorker(worker)])
            payloads, mutations = [], []
            nxt = self._begin(slot, slot.queue.popleft(), payloads, mutations)
            run_id = nxt.run_id
        elif not slot.stopping:
            slot.worker = replace(worker, state=WorkerState.IDLE)
            payloads.append(WorkerStateChanged(WorkerState.RUNNING, WorkerState.IDLE))
            mutations.append(PutWorker(slot.worker))
        else:
            mutations.append(PutWorker(worker))
        self._log.append(worker.worker_id, run_id, payloads, mutations)
        if nxt is not None:
            self._spawn(slot, nxt)

    def _cancel_active(self, slot: _Slot, state: RunState, reason: str) -> None:
        task = slot.task
        if task is not None and not task.done() and slot.cancel_state is None:
            slot.cancel_state = state  # record why before cancelling
            slot.cancel_reason = reason
            task.cancel()

    def _drop_queue(self, slot: _Slot, state: RunState, reason: str) -> None:
        log_ = self._require_log()
        while slot.queue:
            run = slot.queue.popleft()
            done = replace(
                run,
                state=state,
                finished_at=now(),
                error=RunError(state.value, reason),
                input_text="",
            )
            self._runs[run.run_id] = done
            self._retire(done)
            self._run_ended(done)
            log_.append(run.worker_id, run.run_id, [RunFinished(done)], [PutRun(done)])

    async def _wait_task(self, slot: _Slot) -> None:
        task = slot.task
        if task is not None and not task.done():
            await asyncio.wait([task])

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a queued or active run (its partial answer is kept) and return it once its
        RunFinished is committed. Idempotent: a finished run is returned unchanged."""
        log_ = self._require_log()
        run = self._get_run(run_id)
        if run.state.terminal:
            return run
        self._store_watch.check()
        slot = self._slot(run.worker_id)
        if run.state is RunState.QUEUED:
            with contextlib.suppress(ValueError):
                slot.queue.remove(run)
            done = replace(
                run,
                state=RunState.CANCELLED,
                finished_at=now(),
                error=RunError("CANCELLED", "cancelled by request"),
                input_text="",
            )
            self._runs[run_id] = done
            self._retire(done)
            self._run_ended(done)
            events = log_.append(run.worker_id, run_id, [RunFinished(done)], [PutRun(done)])
            await log_.wait_committed(events[-1].seq)
            return done
        self._cancel_active(slot, RunState.CANCELLED, "cancelled by request")
        await self._wait_task(slot)
        await log_.wait_committed(log_.last_assigned_seq)
        return self._runs.get(run_id, run)

    async def get_run(self, run_id: str) -> Run:
        """The run as it is now (finished runs beyond max_retained_runs are RUN_NOT_FOUND)."""
        return self._get_run(run_id)

    # a timeout parameter (not only asyncio.timeout around the call): RuntimeClient's shape
    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        """Wait until the run is terminal and return it; ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            return await wait_for_run(self._require_log(), self._get_run, run_id)

    def _get_run(self, run_id: str) -> Run:
        check_id("run_id", run_id, self._limits)
        run = self._runs.get(run_id)
        if run is None:
            raise errors.RunNotFound(run_id)
        return run

    # --- observation ---

    async def get_transcript(
        self, worker_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> Page[TranscriptEntry]:
        """One page of the worker's committed history, oldest first (older entries are read
        from the store)."""
        log_ = self._require_log()
        slot = self._slot(worker_id)
        size = min(self._page_size(page_size), self._limits.transcript_page_max)
        check_page_token(page_token, self._limits)
        start = int(decode_token(page_token, "t")) if page_token else 0
        window = slot.transcript
        total = len(window)
        # Older pages come from the store; the newest from the worker's window.
        chunk = await self._transcripts.page(
            window, start, size, lambda: log_.wait_committed(log_.last_assigned_seq)
        )
        chunk = chunk[: fitting(chunk, wire_size.entry_size, self._page_bytes)]
        end = start + len(chunk)
        token = encode_token("t", str(end)) if end < total else ""
        return Page(tuple(chunk), token, total)

    async def iter_transcript(
        self, worker_id: str, *, page_size: int = 0
    ) -> AsyncGenerator[TranscriptEntry, None]:
        """The whole transcript, oldest first, page by page."""
        token = ""
        while True:
            page = await self.get_transcript(worker_id, page_size=page_size, page_token=token)
            for entry in page.items:
                yield entry
            token = page.next_page_token
            if not token:
                return

    async def list_events(
        self, *, after_seq: int = 0, worker_id: str = "", page_size: int = 0
    ) -> EventsPage:
        """Poll the log: committed events with seq > ``after_seq`` (0 = from the oldest
        retained), optionally of one worker."""
        log_ = self._require_log()
        if after_seq < 0:
            raise errors.InvalidArgument("after_seq", "must be >= 0")
        if worker_id:
            self._slot_or_known(worker_id)
        size = min(self._page_size(page_size), self._limits.event_batch_max)
        events = await log_.read(after_seq, size, worker_id)
        events = events[: fitting(events, wire_size.event_size, self._page_bytes)]
        return EventsPage(tuple(events), log_.committed_seq, self._store.oldest_seq())

    def subscribe(
        self, worker_id: str = "", after_seq: int = 0, from_now: bool = False
    ) -> Subscription:
        """Events with seq > ``after_seq`` (``from_now``: only new ones), replayed then live,
        optionally of one worker: iterate with ``async for`` (as the client's ``subscribe``). It
        ends when the Runtime closes and raises SubscriberLagging if it falls more than
        ``subscriber_buffer_events`` behind; ``close()`` it when leaving early."""
        log_ = self._require_log()
        if after_seq < 0:
            raise errors.InvalidArgument("after_seq", "must be >= 0")
        if worker_id:
            self._slot_or_known(worker_id)
        return log_.subscribe(after_seq=after_seq, worker_id=worker_id, from_now=from_now)

    def _slot_or_known(self, worker_id: str) -> None:
        # Events outlive a deleted worker (until retention), so a filter on any well-formed id is
        # fine; a malformed one is a caller mistake.
        check_id("worker_id", worker_id, self._limits)

    async def get_usage(self, worker_id: str = "") -> UsageSummary:
        """Usage of one worker (or of the whole runtime) and the number of runs it covers, with
        the runtime's lifetime totals (see :class:`UsageSummary`)."""
        if worker_id:
            slot = self._slot(worker_id)
            runs = slot.run_count
            usage = slot.worker.usage
            if slot.active is not None:
                usage = usage + slot.run_usage
            return UsageSummary(usage, runs, usage, runs)
        usage = self._usage
        for slot in self._slots.values():
            if slot.active is not None:
                usage = usage + slot.run_usage
        deleted = self._deleted
        return UsageSummary(
            usage, self._run_count, usage + deleted.usage, self._run_count + deleted.runs
        )

    # --- helpers ---

    def _provider(self, profile: Profile) -> engine.Provider:
        provider = self._providers.get(profile.name)
        if provider is None:
            factory = self._provider_factory
            if factory is None:
                # Provider timeouts are per stream (idle timeout); the client's own are generous.
                self._http = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))
                factory = self._provider_factory = _provider_factory(self._http, self._local_models)
            provider = factory(profile)
            if self._observer is not None:
                provider = MeteredProvider(provider, self._observer)
            self._providers[profile.name] = provider
        return provider

    def _run_ended(self, run: Run) -> None:
        """Tell the observer (operators' metrics) that a run of this process ended; runs loaded
        or recovered from the store are not counted (RECOVERED reports those)."""
        if self._observer is not None:
            started = run.started_at
            duration = (run.finished_at or now()) - started if started else None
            self._observer.run_finished(run.state.value, duration)

    def _retire(self, run: Run) -> None:
        """``run`` just finished: keep it for GetRun, forgetting the oldest finished runs beyond
        ``max_retained_runs`` (their records stay in a durable store; their events age out with
        the log's retention)."""
        self._finished.append(run.run_id)
        while len(self._finished) > max(1, self._limits.max_retained_runs):
            old = self._runs.get(self._finished.popleft())
            if old is not None and old.state.terminal:
                del self._runs[old.run_id]

    def _new_slot(self, worker: Worker, transcript_length: int = 0) -> _Slot:
        wid = worker.worker_id
        return _Slot(
            worker=worker,
            transcript=self._transcripts.open(wid, transcript_length),
            queue=InputQueue(self._budget),
        )

    def _record_bytes(self) -> int:
        """The memory budget's allowance for the Runtime's records (see _budget)."""
        return (
            len(self._slots) * WORKER_RECORD_BYTES
            + len(self._runs) * RUN_RECORD_BYTES
            + len(self._create_keys) * KEY_RECORD_BYTES
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


def _without_input(run: Run) -> Run:
    return replace(run, input_text="") if run.input_text else run


def _initial_key(request_id: str) -> str:
    return f"create:{request_id}"


def _gone(key: PutRequestKey) -> Run:
    raise errors.RunNotFound(key.result)
