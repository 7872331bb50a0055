"""The Runtime: hosts Workers, runs their Runs, and records everything in the event log.

Concurrency model: one asyncio loop. Every decision that must be atomic (the single-flight gate,
idempotency lookups, queue bounds) is taken synchronously — with no ``await`` between the check
and the state change — so N concurrent callers cannot both win. Each Run executes in its own
task; idle Workers own no task at all (10,000 idle workers cost only their records).

Who does what: the Runtime keeps the catalog of workers (one :class:`~._host.WorkerHost` each,
which owns the worker's queue, active run, execution and cancellation), idempotency, admission
(validation, limits, the memory budget) and paging, and delegates the rest — runs and totals to
``_runbook``, turn execution and event mapping to ``_host``/``_turns``, recovery to
``_recovery``, providers to ``_providers``, diagnostics to ``_diagnostics``, store health to
``_storewatch``, resources to ``_lifecycle``.

Lifecycle: ``start()`` acquires the providers, opens the store and recovers (runs that were
active become INTERRUPTED), each resource onto a stack as it succeeds, so a failed start releases
what it acquired; ``close(grace_s)`` drains: no new work, active runs get ``grace_s`` to finish
and are then interrupted, their final events are committed and delivered to every subscription,
which then ends (RUNTIME_DRAINING with its last seq at the gRPC edge); then the stack is released
(store, providers, HTTP client, local models) and any failures are raised together. Both are
idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping

from runtime_server import errors
from runtime_server.model import (
    BusyPolicy,
    ConfigBundleRef,
    DiagnosticLevel,
    Payload,
    Run,
    RunQueued,
    RunState,
    Worker,
    WorkerCreated,
    WorkerDeleted,
    WorkerState,
    Workspace,
    now,
)
from runtime_server.runtime._budget import (
    RUN_RECORD_BYTES,
    WORKER_RECORD_BYTES,
)
from runtime_server.runtime._core import MESSAGE_HEADROOM_BYTES
from runtime_server.runtime._ids import fingerprint, uuid7
from runtime_server.runtime._info import (
    FEATURES,
    VERSION,
    Accepted,
    Created,
    EventsPage,
    RuntimeInfo,
    RuntimeState,
    limits_from,
)
from runtime_server.runtime._lifecycle import RuntimeCloseError
from runtime_server.runtime._lifetime import deleted_mutation
from runtime_server.runtime._providers import (
    ProviderFactory,
    ToolsFactory,
)
from runtime_server.runtime._queries import RuntimeQueries
from runtime_server.runtime._request_limits import (
    check_config_bundle,
    check_id,
    check_name,
    check_reason,
    check_worker_fits,
    check_workspace_size,
)
from runtime_server.runtime._validation import (
    check_labels,
    check_len,
    check_request_id,
    check_unicode,
    check_workspace,
)
from runtime_server.store import (
    DeleteWorkerData,
    Mutation,
    PutRequestKey,
    PutRun,
    PutWorker,
    text_bytes,
)

__all__ = [
    "FEATURES",
    "VERSION",
    "Accepted",
    "Created",
    "EventsPage",
    "ProviderFactory",
    "Runtime",
    "RuntimeCloseError",
    "RuntimeInfo",
    "RuntimeState",
    "ToolsFactory",
    "limits_from",
]


class Runtime(RuntimeQueries):
    """An embeddable Runtime. Use as ``async with Runtime() as rt: ...`` or start()/close().

    Its methods have the names, parameters and async shape of :class:`runtime_client.RuntimeClient`
    wherever the two overlap — every read is ``async def`` (``get_runtime``, ``get_worker``,
    ``list_workers``, ``iter_workers``, ``get_run``, ``wait_run``, ``get_transcript``,
    ``iter_transcript``, ``list_events``, ``get_usage``, ``list_diagnostics``, ``list_profiles``)
    and ``subscribe`` is iterated with ``async for`` — so code written against one runs against
    the other. What they return are the server's domain values (``runtime_server.model``); the
    client's models and errors come through ``runtime_server.embedded``. :meth:`info` stays as a
    synchronous snapshot for in-process callers that cannot await (health, metrics, tests).

    ``provider_factory`` builds a provider per profile; without one, the Runtime uses
    :class:`~runtime_server.runtime._providers.HttpProviderFactory` (one pooled HTTP client and
    the bundled local models), which it opens at start and closes at close. A factory given here
    is the caller's to close.
    """

    # --- diagnostics ---

    def diagnose(
        self,
        level: DiagnosticLevel,
        code: str,
        message: str,
        *,
        worker_id: str = "",
        run_id: str = "",
    ) -> None:
        """Record a diagnostic (kept in the ring, published as an event, stored and logged):
        the hook for layers above the core, e.g. the gRPC edge's ``RPC_INTERNAL_ERROR`` for a
        bug answered INTERNAL. ``message`` is cut to 4,096 characters; it must hold no secret."""
        self._diagnose(level, code, message, worker_id, run_id)

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
        check_unicode(
            worker_id=worker_id, profile=profile, display_name=display_name, labels=labels,
            request_id=request_id, workspace=workspace, config_bundle=config_bundle,
            initial_input=initial_input, capabilities=capabilities,
        )  # fmt: skip
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
                host = self._hosts.get(prior.result)
                if host is None:
                    await self._settled(self._unsettled())  # a delete is reported once committed
                    raise errors.WorkerNotFound(prior.result)
                run = None
                if initial_input:
                    key = host.request_keys.get(_initial_key(request_id))
                    run = self._book.runs.get(key.result) if key else None
                worker = host.snapshot()
                await self._settled(self._unsettled(worker.worker_id))  # as GetWorker (_settle)
                return Created(worker, prior.seq, run)
        # Host policy, paths and capabilities: after the idempotency lookup (a retry returns the
        # first result even if a directory has gone since), and synchronous up to the claim.
        prepared = self._workspaces.prepare(
            self._bundles.confirm(bundled) or self._config.profiles[profile],
            workspace,
            tuple(capabilities),
        )
        if worker_id and worker_id in self._hosts:
            raise errors.WorkerAlreadyExists(worker_id)
        if len(self._hosts) >= lim.max_workers:
            raise errors.TooManyWorkers(lim.max_workers)
        self._budget.admit(
            WORKER_RECORD_BYTES
            + (bundled.memory_bytes if bundled is not None else 0)  # its profile snapshot
            + (text_bytes(initial_input) if initial_input else 0)
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
        host = self._new_host(worker)
        self._hosts[worker.worker_id] = host
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
        # as GetWorker: the worker as it is now (its initial run may have ended in memory), once
        # committed (see _settle)
        snapshot = host.snapshot()
        await self._settled(self._unsettled(worker.worker_id))
        return Created(snapshot, seq, run)

    async def stop_worker(self, worker_id: str, *, reason: str = "") -> Worker:
        """Cancel the active run (keeping its partial answer), drop queued inputs, stop the worker
        for good. Idempotent; concurrent calls all answer once the stop is committed."""
        check_unicode(worker_id=worker_id, reason=reason)
        reason = reason or "stopped by request"
        self._require_log()
        host = await self._held(worker_id)
        check_reason("reason", reason, self._limits)
        self._store_watch.check()
        await host.stop(reason)
        return host.snapshot()

    async def delete_worker(self, worker_id: str) -> None:
        """Stop the worker and remove it with its transcript, runs and keys (its events age out
        with the log; its usage stays in the lifetime totals)."""
        check_unicode(worker_id=worker_id)
        log_ = self._require_log()
        host = await self._held(worker_id)
        worker_id = host.worker.worker_id
        await self.stop_worker(worker_id, reason="deleted")
        self._store_watch.check()  # (a store failure since then replaced the hosts)
        if self._hosts.get(worker_id) is not host:
            return  # a concurrent delete won
        del self._hosts[worker_id]
        self._bundles.forget(host.worker)
        self._transcripts.drop(host.transcript)
        self._workspaces.allocations.release(worker_id)
        # Runtime-wide usage is the sum over the workers it holds (as rebuilt on restart): a
        # deleted worker's usage leaves with its data, while the lifetime totals keep it
        # (recorded with the delete itself).
        self._book.forget_worker(worker_id, host.worker.usage, host.run_count)
        events = log_.append(
            worker_id,
            "",
            [WorkerDeleted()],
            [DeleteWorkerData(worker_id), deleted_mutation(self._book.deleted)],
        )
        # Its per-worker bookkeeping goes with it (a NOT_FOUND waits for every append; _settle):
        # now, before any await, so a worker created again under its id keeps its own.
        log_.forget_worker(worker_id, events[-1].seq)
        await log_.wait_committed(events[-1].seq)

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
        check_unicode(worker_id=worker_id, text=text, request_id=request_id)
        check_request_id(request_id, self._limits)
        return await self._send_input(worker_id, text, request_id, busy_policy)

    async def _send_input(
        self, worker_id: str, text: str, request_id: str, busy_policy: BusyPolicy
    ) -> Accepted:
        log_ = self._check_serving()
        lim = self._limits
        try:
            host = self._host(worker_id)
        except errors.WorkerNotFound:
            await self._settled(self._unsettled())  # a delete is reported once committed
            raise
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
        fp = fingerprint(text, busy_policy.value) if request_id else ""  # only keys use it
        if request_id:
            prior = host.request_keys.get(request_id)
            if prior is not None:
                if prior.fingerprint != fp:
                    raise errors.IdempotencyConflict(request_id)
                await log_.wait_committed(prior.seq)
                run = self._book.runs.get(prior.result) or _gone(prior)
                await self._settled(self._unsettled(run.worker_id))  # as GetRun (see _settle)
                return Accepted(run, prior.seq)
        host.check_accepting()
        worker_id = host.worker.worker_id
        run_id, created = uuid7(), now()
        run = Run(run_id, worker_id, RunState.QUEUED, created, input_text=text)
        # Events carry the run as metadata: the text travels once, in InputCommitted.
        payloads: list[Payload] = [RunQueued(Run(run_id, worker_id, RunState.QUEUED, created))]
        mutations: list[Mutation] = [PutRun(run)]
        if host.active is not None:
            if busy_policy is BusyPolicy.REJECT:
                busy = host.active.run_id
                # Name only a committed run: if its batch fails, this caller hears STORE_FAILURE.
                await log_.wait_committed(log_.last_assigned_seq)
                raise errors.WorkerBusy(worker_id, busy)
            if len(host.queue) >= lim.max_queue_per_worker:
                raise errors.QueueFull(worker_id, lim.max_queue_per_worker)
        self._budget.admit(text_bytes(text) + RUN_RECORD_BYTES)
        seq = log_.last_assigned_seq + 1
        if request_id:
            key = PutRequestKey(worker_id, request_id, fp, run.run_id, seq)
            mutations.append(key)
            self._remember(host.request_keys, key, lim.idempotency_keys_per_worker)
        self._book.add(run)
        host.run_count += 1
        accepted, last = host.submit(run, busy_policy, payloads, mutations)
        await log_.wait_committed(last)
        return Accepted(accepted, seq)

    async def cancel_run(self, run_id: str) -> Run:
        """Cancel a queued or active run (its partial answer is kept) and return it once its
        RunFinished is committed. Idempotent: a finished run is returned unchanged."""
        log_ = self._require_log()
        try:
            run = self._get_run(run_id)
        except errors.RunNotFound:
            await self._settled(self._unsettled())  # a delete is reported once committed
            raise
        if run.state.terminal:
            return await self.get_run(run_id)  # answered once committed, as GetRun does
        self._store_watch.check()
        host = self._host(run.worker_id)
        if run.state is RunState.QUEUED:
            done, seq = host.cancel_queued(run)
            await log_.wait_committed(seq)
            return done
        host.cancel_active(RunState.CANCELLED, "cancelled by request")
        await host.wait_task()
        await log_.wait_committed(log_.last_assigned_seq)
        return self._book.runs.get(run_id, run)


def _initial_key(request_id: str) -> str:
    return f"create:{request_id}"


def _gone(key: PutRequestKey) -> Run:
    raise errors.RunNotFound(key.result)
