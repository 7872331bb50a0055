"""The one place that converts between ``worker_runtime.v1`` protobuf messages and client models.

Event conversion is the hot path (a busy Runtime streams 100k+ events/s), so it avoids
reflection: one ``WhichOneof`` call picks a small function from a dict, each function reads the
few fields it needs by attribute, and timestamps are read as ``seconds + nanos`` rather than
through ``ToDatetime``. Enum tables are built once, at import, from the model enums' names, so a
new enum value only needs a model member.

The models an event carries (``Run``, ``Usage``, ``TranscriptEntry``, ``Message`` and the
payloads holding them) are built by keyword through :func:`_maker`, not through their frozen
dataclass ``__init__``: that one assigns each field with ``object.__setattr__`` (a global lookup,
an attribute lookup and a generic call per field), which made a ``RunFinished`` event cost
~15 µs to convert. A maker writes each slot through its descriptor instead: the same object
(same fields, same equality; a test compares them with the constructor's) at less than half the
cost (measured: a ``Run`` 4.4 -> 1.9 µs, a ``Usage`` 3.3 -> 1.3 µs).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import fields
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

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
    Heartbeat,
    InputCommitted,
    Limits,
    Message,
    MessageCommitted,
    Mount,
    MountMode,
    Page,
    PartialDiscarded,
    Payload,
    Profile,
    ReasoningDelta,
    Role,
    Run,
    RunError,
    RunFinished,
    RunQueued,
    RunStarted,
    RunState,
    RuntimeInfo,
    RuntimeState,
    StoreState,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptEntry,
    TranscriptPage,
    UnknownPayload,
    Usage,
    UsageReported,
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


# --- building the hot models -------------------------------------------------------------------

M = TypeVar("M")


def _maker(cls: type[M]) -> Callable[..., M]:
    """A function building ``cls`` (a frozen, slotted dataclass) from keyword arguments, one per
    field, all required: ``object.__new__`` and each slot written through its descriptor —
    what the generated ``__init__`` does, without its ``object.__setattr__`` per field (see the
    module docstring). Generated like dataclasses' own ``__init__``, from ``fields(cls)``, so a
    new field is a required keyword at once (a missing one raises ``TypeError``)."""
    names = [f.name for f in fields(cls)]  # type: ignore[arg-type]
    namespace: dict[str, object] = {"_new": object.__new__, "_cls": cls}
    for name in names:
        namespace[f"_set_{name}"] = getattr(cls, name).__set__  # the slot's member descriptor
    body = "".join(f"    _set_{name}(_o, {name})\n" for name in names)
    source = f"def make(*, {', '.join(names)}):\n    _o = _new(_cls)\n{body}    return _o\n"
    exec(source, namespace)  # (generated from the dataclass's own field names)
    make: Callable[..., M] = namespace["make"]  # type: ignore[assignment]
    make.__qualname__ = make.__name__ = f"make_{cls.__name__}"
    return make


_make_usage = _maker(Usage)
_make_run = _maker(Run)
_make_message = _maker(Message)
_make_entry = _maker(TranscriptEntry)
_ZERO_USAGE = Usage()  # (immutable: shared by every message whose usage is all zeros)


# --- scalars ----------------------------------------------------------------------------------


def ts(t: Timestamp) -> float:
    """Seconds since the epoch; an unset Timestamp is 0.0."""
    return t.seconds + t.nanos * 1e-9


def usage(m: pb.Usage) -> Usage:
    total = m.total_tokens
    if not total and m.ByteSize() == 0:
        return _ZERO_USAGE  # a run's usage before its first request
    return _make_usage(
        input_tokens=m.input_tokens,
        output_tokens=m.output_tokens,
        cache_read_tokens=m.cache_read_tokens,
        cache_write_tokens=m.cache_write_tokens,
        reasoning_tokens=m.reasoning_tokens,
        total_tokens=total,
    )


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
    return _make_run(
        run_id=m.run_id,
        worker_id=m.worker_id,
        state=_RUN_STATE.get(m.state, RunState.UNSPECIFIED),
        created_at=created.seconds + created.nanos * 1e-9,
        started_at=started.seconds + started.nanos * 1e-9,
        finished_at=finished.seconds + finished.nanos * 1e-9,
        usage=usage(m.usage),
        error=RunError(code=m.error.code, message=m.error.message) if m.HasField("error") else None,
        stop_reason=m.stop_reason,
    )


def message(m: pb.Message) -> Message:
    calls = m.tool_calls
    return _make_message(
        role=_ROLE.get(m.role, Role.UNSPECIFIED),
        text=m.text,
        reasoning=m.reasoning,
        tool_calls=tuple(
            ToolCall(call_id=c.call_id, name=c.name, arguments=c.arguments) for c in calls
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
    return _make_entry(
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
_make_usage_reported = _maker(UsageReported)
_make_input_committed = _maker(InputCommitted)
_make_message_committed = _maker(MessageCommitted)
_make_run_queued = _maker(RunQueued)
_make_run_started = _maker(RunStarted)
_make_run_finished = _maker(RunFinished)

# The two streaming payloads (most events of a run) are built like events below: their one slot
# written by name through its descriptor, which is keyword construction without __init__'s cost.
_set_text_delta = getattr(TextDelta, "text").__set__  # noqa: B009
_set_reasoning_delta = getattr(ReasoningDelta, "text").__set__  # noqa: B009
assert [f.name for f in fields(TextDelta)] == [f.name for f in fields(ReasoningDelta)] == ["text"]


def _text_delta(text: str) -> TextDelta:
    p: TextDelta = object.__new__(TextDelta)
    _set_text_delta(p, text)
    return p


def _reasoning_delta(text: str) -> ReasoningDelta:
    p: ReasoningDelta = object.__new__(ReasoningDelta)
    _set_reasoning_delta(p, text)
    return p


# Each function takes the whole Event message: one attribute read beats getattr(msg, kind).
_PAYLOAD: dict[str | None, Callable[[pb.Event], Payload]] = {
    "text_delta": lambda e: _text_delta(e.text_delta.text),
    "reasoning_delta": lambda e: _reasoning_delta(e.reasoning_delta.text),
    "tool_call_started": lambda e: ToolCallStarted(
        call_id=e.tool_call_started.call_id,
        tool_name=e.tool_call_started.tool_name,
        arguments=e.tool_call_started.arguments,
    ),
    "tool_call_finished": lambda e: ToolCallFinished(
        call_id=e.tool_call_finished.call_id,
        tool_name=e.tool_call_finished.tool_name,
        result=e.tool_call_finished.result,
        is_error=e.tool_call_finished.is_error,
    ),
    "heartbeat": lambda e: Heartbeat(last_seq=e.heartbeat.last_seq),
    "usage_reported": lambda e: _make_usage_reported(usage=usage(e.usage_reported.usage)),
    "input_committed": lambda e: _make_input_committed(
        entry=transcript_entry(e.input_committed.entry)
    ),
    "message_committed": lambda e: _make_message_committed(
        entry=transcript_entry(e.message_committed.entry)
    ),
    "run_queued": lambda e: _make_run_queued(run=run(e.run_queued.run)),
    "run_started": lambda e: _make_run_started(run=run(e.run_started.run)),
    "run_finished": lambda e: _make_run_finished(run=run(e.run_finished.run)),
    "worker_state_changed": lambda e: WorkerStateChanged(
        previous=_WORKER_STATE.get(e.worker_state_changed.previous, WorkerState.UNSPECIFIED),
        state=_WORKER_STATE.get(e.worker_state_changed.state, WorkerState.UNSPECIFIED),
    ),
    "worker_created": lambda e: WorkerCreated(worker=worker(e.worker_created.worker)),
    "partial_discarded": lambda e: PartialDiscarded(reason=e.partial_discarded.reason),
    "worker_stopped": lambda e: WorkerStopped(reason=e.worker_stopped.reason),
    "worker_deleted": lambda e: _WORKER_DELETED,
    "diagnostic": lambda e: diagnostic(e.diagnostic),
    # A oneof member this client's generated code does not know arrives as an unknown field.
    None: lambda e: _UNKNOWN,
}


# Events are built without the dataclass __init__: a frozen dataclass assigns each field through
# object.__setattr__, which was ~40% of converting a TextDelta event; writing the slots through
# their descriptors yields an identical object (same fields, same equality) in about half the time.
_new = object.__new__
_set_seq = getattr(Event, "seq").__set__  # noqa: B009 - mypy types the class attribute as int
_set_worker_id = getattr(Event, "worker_id").__set__  # noqa: B009
_set_run_id = getattr(Event, "run_id").__set__  # noqa: B009
_set_time = getattr(Event, "time").__set__  # noqa: B009
_set_payload = getattr(Event, "payload").__set__  # noqa: B009
_set_raw = getattr(Event, "raw").__set__  # noqa: B009
_EVENT_FIELDS = ("seq", "worker_id", "run_id", "time", "payload", "raw")
assert tuple(f.name for f in fields(Event)) == _EVENT_FIELDS, "update event() with Event"


def event(m: pb.Event) -> Event:
    """Convert one wire Event. Keeps the wire message as ``Event.raw`` (a reference, no copy)."""
    ev: Event = _new(Event)
    _set_seq(ev, m.seq)
    _set_worker_id(ev, m.worker_id)
    _set_run_id(ev, m.run_id)
    t = m.time
    _set_time(ev, t.seconds + t.nanos * 1e-9)
    _set_payload(ev, _PAYLOAD[m.WhichOneof("payload")](m))
    _set_raw(ev, m)
    return ev


# --- responses --------------------------------------------------------------------------------


def created(m: catalog_pb.CreateWorkerResponse) -> Created:
    return Created(
        worker=worker(m.worker),
        seq=m.seq,
        initial_run=run(m.initial_run) if m.HasField("initial_run") else None,
    )


def accepted(m: interaction_pb.SendInputResponse) -> Accepted:
    return Accepted(run=run(m.run), seq=m.seq)


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
        busy_policy=_BUSY_POLICY_TO_WIRE[BusyPolicy(busy_policy)],
    )
