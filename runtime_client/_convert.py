"""The one place that converts between ``worker_runtime.v1`` protobuf messages and client models.

Event conversion is the hot path (a busy Runtime streams 100k+ events/s), so it avoids
reflection: one ``WhichOneof`` call picks a small function from a dict, each function reads the
few fields it needs by attribute, and timestamps are read as ``seconds + nanos`` rather than
through ``ToDatetime``. Enum tables are built once, at import, from the model enums' names, so a
new enum value only needs a model member.

The models an event carries are built by keyword through :mod:`._makers` (a draft of the
model's slots filled by attribute stores, then made the model by one ``__class__`` assignment,
instead of the frozen dataclass ``__init__``). Each field is read from protobuf once: a read is
most of what converting an event costs now (~300-1,000 instructions each).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from runtime_client._makers import (
    draft,
    make_accepted,
    make_entry,
    make_heartbeat,
    make_input_committed,
    make_message,
    make_message_committed,
    make_run,
    make_run_error,
    make_run_finished,
    make_run_queued,
    make_run_started,
    make_tool_call,
    make_tool_call_finished,
    make_tool_call_started,
    make_usage_reported,
    reasoning_delta,
    text_delta,
    usage,
)
from runtime_client._models import (
    Accepted,
    BusyPolicy,
    Capabilities,
    ConfigBundleRef,
    Created,
    Diagnostic,
    DiagnosticLevel,
    Event,
    EventsPage,
    Limits,
    Message,
    Mount,
    MountMode,
    Page,
    PartialDiscarded,
    Payload,
    Profile,
    Role,
    Run,
    RunState,
    RuntimeInfo,
    RuntimeState,
    StoreState,
    TranscriptEntry,
    TranscriptPage,
    UnknownPayload,
    UsageSummary,
    Worker,
    WorkerCounts,
    WorkerCreated,
    WorkerDeleted,
    WorkerState,
    WorkerStateChanged,
    WorkerStopped,
    Workspace,
    WorkspaceClaim,
)
from runtime_client._text import check_unicode
from runtime_client.api import catalog_service_pb2 as catalog_pb
from runtime_client.api import interaction_service_pb2 as interaction_pb
from runtime_client.api import management_service_pb2 as management_pb
from runtime_client.api import observation_service_pb2 as observation_pb
from runtime_client.api import types_pb2 as pb

E = TypeVar("E", bound=enum.Enum)


def _from_wire(wrapper: object, prefix: str, model: type[E]) -> dict[int, E]:
    """{proto enum number: model member}, matched by name (``WORKER_STATE_IDLE`` -> ``IDLE``)."""
    value: Callable[[str], int] = wrapper.Value  # type: ignore[attr-defined]
    return {value(prefix + m.name): m for m in model}


_WORKER_STATE = _from_wire(pb.WorkerState, "WORKER_STATE_", WorkerState)
_RUN_STATE = _from_wire(pb.RunState, "RUN_STATE_", RunState)
_ROLE = _from_wire(pb.Role, "ROLE_", Role)
_MOUNT_MODE = _from_wire(pb.MountMode, "MOUNT_MODE_", MountMode)
_DIAGNOSTIC_LEVEL = _from_wire(pb.DiagnosticLevel, "DIAGNOSTIC_LEVEL_", DiagnosticLevel)
_RUNTIME_STATE = _from_wire(management_pb.RuntimeState, "RUNTIME_STATE_", RuntimeState)
_STORE_STATE = _from_wire(management_pb.StoreState, "STORE_STATE_", StoreState)

_WORKER_STATE_TO_WIRE = {m: pb.WorkerState.Value("WORKER_STATE_" + m.name) for m in WorkerState}
_MOUNT_MODE_TO_WIRE = {m: pb.MountMode.Value("MOUNT_MODE_" + m.name) for m in MountMode}
_BUSY_POLICY_TO_WIRE = {m: pb.BusyPolicy.Value("BUSY_POLICY_" + m.name) for m in BusyPolicy}


# --- scalars ----------------------------------------------------------------------------------


def ts(t: Timestamp) -> float:
    """Seconds since the epoch; an unset Timestamp is 0.0."""
    return t.seconds + t.nanos * 1e-9


# --- core messages ----------------------------------------------------------------------------


def workspace(m: pb.Workspace) -> Workspace:
    return Workspace(
        root=m.root,
        mounts=tuple(
            Mount(path=x.path, mode=_MOUNT_MODE.get(x.mode, MountMode.UNSPECIFIED))
            for x in m.mounts
        ),
        root_mode=_MOUNT_MODE.get(m.root_mode, MountMode.UNSPECIFIED),
    )


def workspace_claim(m: management_pb.WorkspaceClaim) -> WorkspaceClaim:
    return WorkspaceClaim(
        worker_id=m.worker_id,
        path=m.path,
        mode=_MOUNT_MODE.get(m.mode, MountMode.UNSPECIFIED),
    )


def worker(m: pb.Worker) -> Worker:
    return Worker(
        worker_id=m.worker_id,
        runtime_id=m.runtime_id,
        state=_WORKER_STATE.get(m.state, WorkerState.UNSPECIFIED),
        profile=m.profile,
        display_name=m.display_name,
        labels=dict(m.labels),
        active_run_id=m.active_run_id,
        created_at=ts(m.created_at),
        usage=usage(m.usage),
        workspace=workspace(m.workspace) if m.HasField("workspace") else None,
        config_bundle=(
            ConfigBundleRef(id=m.config_bundle.id, digest=m.config_bundle.digest)
            if m.HasField("config_bundle")
            else None
        ),
        queued_runs=m.queued_runs,
        capabilities=tuple(m.capabilities),
        tools=tuple(m.tools),
    )


def run(m: pb.Run) -> Run:
    created, started, finished = m.created_at, m.started_at, m.finished_at
    return make_run(
        run_id=m.run_id,
        worker_id=m.worker_id,
        state=_RUN_STATE.get(m.state, RunState.UNSPECIFIED),
        created_at=created.seconds + created.nanos * 1e-9,
        started_at=started.seconds + started.nanos * 1e-9,
        finished_at=finished.seconds + finished.nanos * 1e-9,
        usage=usage(m.usage),
        error=make_run_error(code=m.error.code, message=m.error.message)
        if m.HasField("error")
        else None,
        stop_reason=m.stop_reason,
    )


def message(m: pb.Message) -> Message:
    calls = m.tool_calls
    return make_message(
        role=_ROLE.get(m.role, Role.UNSPECIFIED),
        text=m.text,
        reasoning=m.reasoning,
        tool_calls=tuple(
            make_tool_call(call_id=c.call_id, name=c.name, arguments=c.arguments) for c in calls
        )
        if calls
        else (),
        tool_call_id=m.tool_call_id,
        tool_name=m.tool_name,
        is_error=m.is_error,
        stop_reason=m.stop_reason,
        incomplete=m.incomplete,
    )


def transcript_entry(m: pb.TranscriptEntry) -> TranscriptEntry:
    created = m.created_at
    return make_entry(
        worker_id=m.worker_id,
        index=m.index,
        run_id=m.run_id,
        created_at=created.seconds + created.nanos * 1e-9,
        message=message(m.message),
        seq=m.seq,
    )


def diagnostic(m: pb.Diagnostic) -> Diagnostic:
    return Diagnostic(
        level=_DIAGNOSTIC_LEVEL.get(m.level, DiagnosticLevel.UNSPECIFIED),
        code=m.code,
        message=m.message,
        time=ts(m.time),
        worker_id=m.worker_id,
        run_id=m.run_id,
    )


def profile(m: management_pb.Profile) -> Profile:
    return Profile(
        name=m.name,
        provider=m.provider,
        provider_kind=m.provider_kind,
        model=m.model,
        description=m.description,
        tools=tuple(m.tools),
        builtin=m.builtin,
        max_tokens=m.max_tokens,
        max_tool_rounds=m.max_tool_rounds,
        request_deadline_s=m.request_deadline_s,
        context_max_tokens=m.context_max_tokens,
        context_max_messages=m.context_max_messages,
        context_compaction=m.context_compaction,
    )


# Every limit is a number under the same name on both sides (tests/test_vocabulary_parity.py
# checks the names), so a new limit needs only its proto field and its model field.
_LIMIT_FIELDS = tuple(f.name for f in fields(Limits))


def limits(m: management_pb.Limits) -> Limits:
    return Limits(**{name: getattr(m, name) for name in _LIMIT_FIELDS})


def runtime_info(m: management_pb.RuntimeInfo) -> RuntimeInfo:
    w = m.workers
    c = m.capabilities
    return RuntimeInfo(
        runtime_id=m.runtime_id,
        state=_RUNTIME_STATE.get(m.state, RuntimeState.UNSPECIFIED),
        version=m.version,
        store_kind=m.store_kind,
        started_at=ts(m.started_at),
        workers=WorkerCounts(idle=w.idle, running=w.running, stopped=w.stopped, total=w.total),
        active_runs=m.active_runs,
        queued_runs=m.queued_runs,
        last_seq=m.last_seq,
        oldest_seq=m.oldest_seq,
        subscribers=m.subscribers,
        limits=limits(m.limits),
        capabilities=Capabilities(
            provider_kinds=tuple(c.provider_kinds),
            profiles=tuple(c.profiles),
            features=tuple(c.features),
            worker_capabilities=tuple(c.worker_capabilities),
        ),
        usage=usage(m.usage),
        auth_required=m.auth_required,
        lifetime_usage=usage(m.lifetime_usage),
        lifetime_runs=m.lifetime_runs,
        workspace_claims=m.workspace_claims,
        workspace_claims_read_write=m.workspace_claims_read_write,
        store_state=_STORE_STATE.get(m.store_state, StoreState.UNSPECIFIED),
        store_error=m.store_error,
        memory_bytes=m.memory_bytes,
    )


# --- events (hot path) ------------------------------------------------------------------------

_WORKER_DELETED = WorkerDeleted()
_UNKNOWN = UnknownPayload()

# Events are built like the makers build (see _makers): a draft with the class's slots, filled
# by attribute stores, then made the class by assigning __class__ (so are the delta payloads).
_EventDraft = draft(Event)
if tuple(f.name for f in fields(Event)) != ("seq", "worker_id", "run_id", "time", "payload", "raw"):
    raise TypeError("update event() with the fields of Event")  # (at import, as _makers does)


# A WorkerStateChanged is two enum values: every pair the wire can name is built once and shared
# (immutable, like every model; two runs' state changes need no new object).
_STATE_CHANGES = {
    (p, s): WorkerStateChanged(previous=previous, state=state)
    for p, previous in _WORKER_STATE.items()
    for s, state in _WORKER_STATE.items()
}


def _worker_state_changed(e: pb.Event) -> WorkerStateChanged:
    m = e.worker_state_changed
    previous, state = m.previous, m.state
    change = _STATE_CHANGES.get((previous, state))
    if change is None:  # a state newer than this client: UNSPECIFIED
        change = WorkerStateChanged(
            previous=_WORKER_STATE.get(previous, WorkerState.UNSPECIFIED),
            state=_WORKER_STATE.get(state, WorkerState.UNSPECIFIED),
        )
    return change


# Each function takes the whole Event message: one attribute read beats getattr(msg, kind).
_PAYLOAD: dict[str | None, Callable[[pb.Event], Payload]] = {
    "text_delta": text_delta,
    "reasoning_delta": reasoning_delta,
    "tool_call_started": lambda e: make_tool_call_started(
        call_id=e.tool_call_started.call_id,
        tool_name=e.tool_call_started.tool_name,
        arguments=e.tool_call_started.arguments,
    ),
    "tool_call_finished": lambda e: make_tool_call_finished(
        call_id=e.tool_call_finished.call_id,
        tool_name=e.tool_call_finished.tool_name,
        result=e.tool_call_finished.result,
        is_error=e.tool_call_finished.is_error,
    ),
    "heartbeat": lambda e: make_heartbeat(last_seq=e.heartbeat.last_seq),
    "usage_reported": lambda e: make_usage_reported(usage=usage(e.usage_reported.usage)),
    "input_committed": lambda e: make_input_committed(
        entry=transcript_entry(e.input_committed.entry)
    ),
    "message_committed": lambda e: make_message_committed(
        entry=transcript_entry(e.message_committed.entry)
    ),
    "run_queued": lambda e: make_run_queued(run=run(e.run_queued.run)),
    "run_started": lambda e: make_run_started(run=run(e.run_started.run)),
    "run_finished": lambda e: make_run_finished(run=run(e.run_finished.run)),
    "worker_state_changed": _worker_state_changed,
    "worker_created": lambda e: WorkerCreated(worker=worker(e.worker_created.worker)),
    "partial_discarded": lambda e: PartialDiscarded(reason=e.partial_discarded.reason),
    "worker_stopped": lambda e: WorkerStopped(reason=e.worker_stopped.reason),
    "worker_deleted": lambda e: _WORKER_DELETED,
    "diagnostic": lambda e: diagnostic(e.diagnostic),
    # A oneof member this client's generated code does not know arrives as an unknown field.
    None: lambda e: _UNKNOWN,
}


def event(m: pb.Event) -> Event:
    """Convert one wire Event. Keeps the wire message as ``Event.raw`` (a reference, no copy)."""
    ev: Any = _EventDraft()
    ev.seq = m.seq
    ev.worker_id = m.worker_id
    ev.run_id = m.run_id
    t = m.time
    ev.time = t.seconds + t.nanos * 1e-9
    ev.payload = _PAYLOAD[m.WhichOneof("payload")](m)
    ev.raw = m
    ev.__class__ = Event
    return ev  # type: ignore[no-any-return]


# --- responses --------------------------------------------------------------------------------


def created(m: catalog_pb.CreateWorkerResponse) -> Created:
    return Created(
        worker=worker(m.worker),
        seq=m.seq,
        initial_run=run(m.initial_run) if m.HasField("initial_run") else None,
    )


def accepted(m: interaction_pb.SendInputResponse) -> Accepted:
    return make_accepted(run=run(m.run), seq=m.seq)


def workers_page(m: catalog_pb.ListWorkersResponse) -> Page[Worker]:
    return Page(
        items=tuple(worker(w) for w in m.workers),
        next_page_token=m.next_page_token,
        total_size=m.total_size,
    )


def diagnostics_page(m: management_pb.ListDiagnosticsResponse) -> Page[Diagnostic]:
    return Page(
        items=tuple(diagnostic(d) for d in m.diagnostics),
        next_page_token=m.next_page_token,
        total_size=m.total_size,
    )


def transcript_page(m: observation_pb.GetTranscriptResponse) -> TranscriptPage:
    return TranscriptPage(
        items=tuple(transcript_entry(x) for x in m.entries),
        next_page_token=m.next_page_token,
        total_size=m.total_size,
        resume_after_seq=m.resume_after_seq,
    )


def events_page(m: observation_pb.ListEventsResponse) -> EventsPage:
    return EventsPage(
        events=tuple(event(e) for e in m.events),
        last_seq=m.last_seq,
        oldest_seq=m.oldest_seq,
        next_after_seq=m.next_after_seq,
    )


def usage_summary(m: observation_pb.GetUsageResponse) -> UsageSummary:
    return UsageSummary(
        usage=usage(m.usage),
        runs=m.runs,
        lifetime_usage=usage(m.lifetime_usage),
        lifetime_runs=m.lifetime_runs,
    )


# --- requests ---------------------------------------------------------------------------------


def create_worker_request(
    *,
    worker_id: str,
    profile: str,
    display_name: str,
    labels: Mapping[str, str] | None,
    request_id: str,
    workspace: Workspace | None,
    config_bundle: ConfigBundleRef | None,
    initial_input: str,
    capabilities: Sequence[str] = (),
) -> catalog_pb.CreateWorkerRequest:
    check_unicode(
        worker_id=worker_id, profile=profile, display_name=display_name, labels=labels,
        request_id=request_id, workspace=workspace, config_bundle=config_bundle,
        initial_input=initial_input, capabilities=capabilities,
    )  # fmt: skip
    req = catalog_pb.CreateWorkerRequest(
        worker_id=worker_id,
        profile=profile,
        display_name=display_name,
        labels=labels or {},
        request_id=request_id,
        initial_input=initial_input,
        capabilities=list(capabilities),
    )
    if workspace is not None:
        req.workspace.root = workspace.root
        req.workspace.root_mode = _MOUNT_MODE_TO_WIRE[workspace.root_mode]
        for mount in workspace.mounts:
            req.workspace.mounts.add(path=mount.path, mode=_MOUNT_MODE_TO_WIRE[mount.mode])
    if config_bundle is not None:
        req.config_bundle.id = config_bundle.id
        req.config_bundle.digest = config_bundle.digest
    return req


def list_workers_request(
    *,
    page_size: int,
    page_token: str,
    state: WorkerState | None,
    labels: Mapping[str, str] | None,
) -> catalog_pb.ListWorkersRequest:
    check_unicode(page_token=page_token, labels=labels)
    return catalog_pb.ListWorkersRequest(
        page_size=page_size,
        page_token=page_token,
        state=_WORKER_STATE_TO_WIRE[WorkerState(state) if state else WorkerState.UNSPECIFIED],
        labels=labels or {},
    )


def send_input_request(
    *, worker_id: str, text: str, request_id: str, busy_policy: BusyPolicy
) -> interaction_pb.SendInputRequest:
    check_unicode(worker_id=worker_id, text=text, request_id=request_id)
    return interaction_pb.SendInputRequest(
        worker_id=worker_id,
        text=text,
        request_id=request_id,
        busy_policy=_BUSY_POLICY_TO_WIRE[
            busy_policy if busy_policy.__class__ is BusyPolicy else BusyPolicy(busy_policy)
        ],
    )
