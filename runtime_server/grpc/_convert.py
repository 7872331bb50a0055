"""The one place where server domain objects become protobuf messages, and requests become
domain values. Event conversion is on the hot path: one small function per payload type,
dispatched by type."""

from __future__ import annotations

import dataclasses
import enum
import functools
from collections.abc import Callable
from typing import Any, TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

import engine
from engine.wire import valid_text
from runtime_client.api import config_service_pb2 as cfpb
from runtime_client.api import management_service_pb2 as mpb
from runtime_client.api import types_pb2 as pb
from runtime_server import errors
from runtime_server import model as m
from runtime_server.runtime import Claim, Profile, RuntimeInfo, RuntimeState, StoreState

E = TypeVar("E", bound=enum.Enum)
T = TypeVar("T")
R = TypeVar("R")


# --- text protobuf can carry ------------------------------------------------------------------
# A proto3 string must be valid UTF-8, so a Python str with a lone surrogate cannot be sent. The
# engine repairs what providers send (engine._unicode) before it reaches the log, but a store
# written by an earlier version can hold such text, and one event that cannot be converted made
# every read after it fail (the whole log's ListEvents, every subscription's replay). So each
# conversion of stored text retries once on a copy whose strings are made valid (U+FFFD for a
# lone surrogate): the price is paid only by the rare object that needs it.


def valid_strings(obj: T) -> T:
    """``obj`` with every string in it (dataclass fields, tuples, dicts, nested) valid Unicode."""
    if isinstance(obj, str):
        return valid_text(obj) if type(obj) is str else obj  # type: ignore[return-value]
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        changes = {
            f.name: valid_strings(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init
        }
        return dataclasses.replace(obj, **changes)
    if isinstance(obj, tuple):
        return type(obj)(valid_strings(x) for x in obj) if not hasattr(obj, "_fields") else obj
    if isinstance(obj, dict):
        return {valid_strings(k): valid_strings(v) for k, v in obj.items()}  # type: ignore[return-value]
    return obj


def wire_safe(convert: Callable[[T], R]) -> Callable[[T], R]:
    """``convert``, retried once on :func:`valid_strings` of its argument when a string in it
    cannot be encoded as UTF-8."""

    @functools.wraps(convert)
    def safe(obj: T) -> R:
        try:
            return convert(obj)
        except UnicodeEncodeError:
            return convert(valid_strings(obj))

    return safe


def _to_wire(model: type[E], wrapper: Any, prefix: str) -> dict[E, Any]:
    """{domain member: proto enum number}, matched by name (``IDLE`` -> ``WORKER_STATE_IDLE``):
    a member with no proto value of its name, or a proto value renamed, fails at import."""
    return {member: wrapper.Value(prefix + member.name) for member in model}


WORKER_STATE = _to_wire(m.WorkerState, pb.WorkerState, "WORKER_STATE_")
WORKER_STATE_IN = {v: k for k, v in WORKER_STATE.items()}
RUN_STATE = _to_wire(m.RunState, pb.RunState, "RUN_STATE_")
BUSY_POLICY_IN = {v: k for k, v in _to_wire(m.BusyPolicy, pb.BusyPolicy, "BUSY_POLICY_").items()}
BUSY_POLICY_IN[pb.BUSY_POLICY_UNSPECIFIED] = m.BusyPolicy.REJECT  # unset: the default policy
MOUNT_MODE = _to_wire(m.MountMode, pb.MountMode, "MOUNT_MODE_")
MOUNT_MODE_IN = {v: k for k, v in MOUNT_MODE.items()}
MOUNT_MODE_IN[pb.MOUNT_MODE_UNSPECIFIED] = m.MountMode.READ_ONLY  # unset: the safe default
ROLE = _to_wire(engine.Role, pb.Role, "ROLE_")
LEVEL = _to_wire(m.DiagnosticLevel, pb.DiagnosticLevel, "DIAGNOSTIC_LEVEL_")
RUNTIME_STATE = _to_wire(RuntimeState, mpb.RuntimeState, "RUNTIME_STATE_")
STORE_STATE = _to_wire(StoreState, mpb.StoreState, "STORE_STATE_")


def ts(t: float) -> Timestamp | None:
    if not t:
        return None
    seconds = int(t)
    return Timestamp(seconds=seconds, nanos=int((t - seconds) * 1e9))


def usage(u: engine.Usage) -> pb.Usage:
    return pb.Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        reasoning_tokens=u.reasoning_tokens,
        total_tokens=u.total_tokens,
    )


@wire_safe  # a display name an earlier version stored with a lone surrogate
def worker(w: m.Worker) -> pb.Worker:
    out = pb.Worker(
        worker_id=w.worker_id,
        runtime_id=w.runtime_id,
        state=WORKER_STATE[w.state],
        profile=w.profile,
        display_name=w.display_name,
        labels=dict(w.labels),
        active_run_id=w.active_run_id,
        created_at=ts(w.created_at),
        usage=usage(w.usage),
        queued_runs=w.queued_runs,
        capabilities=w.capabilities,
        tools=w.tools or (),
    )
    if w.workspace is not None:
        out.workspace.CopyFrom(
            pb.Workspace(
                root=w.workspace.root,
                mounts=[pb.Mount(path=x.path, mode=MOUNT_MODE[x.mode]) for x in w.workspace.mounts],
                root_mode=MOUNT_MODE[w.workspace.root_mode],
            )
        )
    if w.config_bundle is not None:
        out.config_bundle.CopyFrom(
            pb.ConfigBundleRef(id=w.config_bundle.id, digest=w.config_bundle.digest)
        )
    return out


@wire_safe
def run(r: m.Run) -> pb.Run:
    return pb.Run(
        run_id=r.run_id,
        worker_id=r.worker_id,
        state=RUN_STATE[r.state],
        created_at=ts(r.created_at),
        started_at=ts(r.started_at),
        finished_at=ts(r.finished_at),
        usage=usage(r.usage),
        error=pb.RunError(code=r.error.code, message=r.error.message) if r.error else None,
        stop_reason=r.stop_reason,
    )


def message(msg: engine.Message) -> pb.Message:
    return pb.Message(
        role=ROLE[msg.role],
        text=msg.text,
        reasoning=msg.reasoning,
        tool_calls=[
            pb.ToolCall(call_id=c.call_id, name=c.name, arguments=c.arguments)
            for c in msg.tool_calls
        ],
        tool_call_id=msg.tool_call_id,
        tool_name=msg.tool_name,
        is_error=msg.is_error,
        stop_reason=msg.stop_reason.value if msg.stop_reason else "",
        incomplete=msg.incomplete,
    )


@wire_safe
def entry(e: m.TranscriptEntry) -> pb.TranscriptEntry:
    return pb.TranscriptEntry(
        worker_id=e.worker_id,
        index=e.index,
        run_id=e.run_id,
        created_at=ts(e.created_at),
        message=message(e.message),
        seq=e.seq,
    )


@wire_safe
def diagnostic(d: m.Diagnostic) -> pb.Diagnostic:
    return pb.Diagnostic(
        level=LEVEL[d.level],
        code=d.code,
        message=d.message,
        time=ts(d.time),
        worker_id=d.worker_id,
        run_id=d.run_id,
    )


_PAYLOAD: dict[type, Callable[[Any], dict[str, Any]]] = {
    m.TextDelta: lambda p: {"text_delta": pb.TextDelta(text=p.text)},
    m.ReasoningDelta: lambda p: {"reasoning_delta": pb.ReasoningDelta(text=p.text)},
    m.WorkerCreated: lambda p: {"worker_created": pb.WorkerCreated(worker=worker(p.worker))},
    m.WorkerStateChanged: lambda p: {
        "worker_state_changed": pb.WorkerStateChanged(
            previous=WORKER_STATE[p.previous], state=WORKER_STATE[p.state]
        )
    },
    m.RunQueued: lambda p: {"run_queued": pb.RunQueued(run=run(p.run))},
    m.RunStarted: lambda p: {"run_started": pb.RunStarted(run=run(p.run))},
    m.InputCommitted: lambda p: {"input_committed": pb.InputCommitted(entry=entry(p.entry))},
    m.ToolCallStarted: lambda p: {
        "tool_call_started": pb.ToolCallStarted(
            call_id=p.call_id, tool_name=p.tool_name, arguments=p.arguments
        )
    },
    m.ToolCallFinished: lambda p: {
        "tool_call_finished": pb.ToolCallFinished(
            call_id=p.call_id, tool_name=p.tool_name, result=p.result, is_error=p.is_error
        )
    },
    m.MessageCommitted: lambda p: {"message_committed": pb.MessageCommitted(entry=entry(p.entry))},
    m.UsageReported: lambda p: {"usage_reported": pb.UsageReported(usage=usage(p.usage))},
    m.PartialDiscarded: lambda p: {"partial_discarded": pb.PartialDiscarded(reason=p.reason)},
    m.RunFinished: lambda p: {"run_finished": pb.RunFinished(run=run(p.run))},
    m.WorkerStopped: lambda p: {"worker_stopped": pb.WorkerStopped(reason=p.reason)},
    m.WorkerDeleted: lambda p: {"worker_deleted": pb.WorkerDeleted()},
    m.Diagnostic: lambda p: {"diagnostic": diagnostic(p)},
}


@wire_safe
def event(e: m.Event) -> pb.Event:
    seconds = int(e.time)
    return pb.Event(
        seq=e.seq,
        worker_id=e.worker_id,
        run_id=e.run_id,
        time=Timestamp(seconds=seconds, nanos=int((e.time - seconds) * 1e9)),
        **_PAYLOAD[type(e.payload)](e.payload),
    )


def heartbeat(last_seq: int, t: float) -> pb.Event:
    seconds = int(t)
    return pb.Event(
        time=Timestamp(seconds=seconds, nanos=int((t - seconds) * 1e9)),
        heartbeat=pb.Heartbeat(last_seq=last_seq),
    )


def limits(lim: m.Limits) -> mpb.Limits:
    return mpb.Limits(
        max_page_size=lim.max_page_size,
        default_page_size=lim.default_page_size,
        max_input_chars=lim.max_input_chars,
        max_display_name_chars=lim.max_display_name_chars,
        max_labels=lim.max_labels,
        max_label_chars=lim.max_label_chars,
        max_request_id_chars=lim.max_request_id_chars,
        max_queue_per_worker=lim.max_queue_per_worker,
        max_workers=lim.max_workers,
        subscriber_buffer_events=lim.subscriber_buffer_events,
        event_batch_max=lim.event_batch_max,
        transcript_page_max=lim.transcript_page_max,
        diagnostics_capacity=lim.diagnostics_capacity,
        idempotency_keys_per_worker=lim.idempotency_keys_per_worker,
        idempotency_keys_create=lim.idempotency_keys_create,
        event_retention_events=lim.event_retention_events,
        event_retention_seconds=lim.event_retention_seconds,
        heartbeat_interval_seconds=lim.heartbeat_interval_seconds,
        max_message_bytes=lim.max_message_bytes,
        max_retained_runs=lim.max_retained_runs,
        max_id_chars=lim.max_id_chars,
        max_ref_chars=lim.max_ref_chars,
        max_path_chars=lim.max_path_chars,
        max_reason_chars=lim.max_reason_chars,
        max_memory_bytes=lim.max_memory_bytes,
        transcript_window_bytes=lim.transcript_window_bytes,
        transcript_cache_bytes=lim.transcript_cache_bytes,
        max_mounts=lim.max_mounts,
        max_file_read_bytes=lim.max_file_read_bytes,
        max_file_scan_bytes=lim.max_file_scan_bytes,
        max_file_write_bytes=lim.max_file_write_bytes,
        max_bundle_bytes=lim.max_bundle_bytes,
        max_bundles=lim.max_bundles,
        max_bundle_profiles=lim.max_bundle_profiles,
        max_bundle_id_chars=lim.max_bundle_id_chars,
        store_write_backlog_events=lim.store_write_backlog_events,
        max_subscribers=lim.max_subscribers,
        max_connection_idle_seconds=lim.max_connection_idle_seconds,
        max_connection_age_seconds=lim.max_connection_age_seconds,
        max_connection_age_grace_seconds=lim.max_connection_age_grace_seconds,
        min_client_ping_interval_seconds=lim.min_client_ping_interval_seconds,
        max_concurrent_streams=lim.max_concurrent_streams,
    )


def runtime_info(info: RuntimeInfo, *, auth_required: bool) -> mpb.RuntimeInfo:
    by = info.workers_by_state
    return mpb.RuntimeInfo(
        runtime_id=info.runtime_id,
        state=RUNTIME_STATE[info.state],
        version=info.version,
        store_kind=info.store_kind,
        started_at=ts(info.started_at),
        workers=mpb.WorkerCounts(
            idle=by[m.WorkerState.IDLE],
            running=by[m.WorkerState.RUNNING],
            stopped=by[m.WorkerState.STOPPED],
            total=sum(by.values()),
        ),
        active_runs=info.active_runs,
        queued_runs=info.queued_runs,
        last_seq=info.last_seq,
        oldest_seq=info.oldest_seq,
        subscribers=info.subscribers,
        limits=limits(info.limits),
        capabilities=mpb.Capabilities(
            provider_kinds=info.provider_kinds,
            profiles=info.profiles,
            features=info.features,
            worker_capabilities=info.worker_capabilities,
        ),
        usage=usage(info.usage),
        auth_required=auth_required,
        lifetime_usage=usage(info.lifetime_usage),
        lifetime_runs=info.lifetime_runs,
        workspace_claims=info.workspace_claims,
        workspace_claims_read_write=info.workspace_claims_read_write,
        store_state=STORE_STATE[info.store_state],
        store_error=info.store_error,
        memory_bytes=info.memory_bytes,
    )


def workspace_claim(c: Claim) -> mpb.WorkspaceClaim:
    return mpb.WorkspaceClaim(worker_id=c.worker_id, path=c.path, mode=MOUNT_MODE[c.mode])


def profile(p: Profile) -> mpb.Profile:
    return mpb.Profile(
        name=p.name,
        provider=p.provider.name,
        provider_kind=p.provider.kind,
        model=p.model,
        description=p.description,
        tools=p.tools,
        builtin=p.builtin,
        max_tokens=p.max_tokens or 0,
        max_tool_rounds=p.max_tool_rounds,
        request_deadline_s=p.request_deadline_s,
        context_max_tokens=p.context.max_tokens,
        context_max_messages=p.context.max_messages,
        context_compaction=p.context.compaction,
    )


# --- requests -> domain ---


def busy_policy(value: int) -> m.BusyPolicy:
    try:
        return BUSY_POLICY_IN[value]  # proto enums are open: any int
    except KeyError:
        raise errors.InvalidArgument("busy_policy", f"unknown value {value}") from None


def worker_state_filter(value: int) -> m.WorkerState | None:
    if value == pb.WORKER_STATE_UNSPECIFIED:
        return None
    try:
        return WORKER_STATE_IN[value]  # proto enums are open: any int
    except KeyError:
        raise errors.InvalidArgument("state", f"unknown value {value}") from None


def workspace(msg: pb.Workspace, present: bool) -> m.Workspace | None:
    if not present:
        return None
    mounts = []
    for i, mount in enumerate(msg.mounts):
        mode = MOUNT_MODE_IN.get(mount.mode)
        if mode is None:
            raise errors.InvalidArgument(
                f"workspace.mounts[{i}].mode", f"unknown value {mount.mode}"
            )
        mounts.append(m.Mount(path=mount.path, mode=mode))
    if not msg.root:
        raise errors.InvalidArgument("workspace.root", "is required when workspace is set")
    root_mode = MOUNT_MODE_IN.get(msg.root_mode)
    if root_mode is None:
        raise errors.InvalidArgument("workspace.root_mode", f"unknown value {msg.root_mode}")
    return m.Workspace(root=msg.root, mounts=tuple(mounts), root_mode=root_mode)


def config_bundle(msg: pb.ConfigBundleRef, present: bool) -> m.ConfigBundleRef | None:
    return m.ConfigBundleRef(id=msg.id, digest=msg.digest) if present else None


# --- batch sizing -----------------------------------------------------------------------------


def config_bundle_info(b: m.ConfigBundle) -> cfpb.ConfigBundle:
    return cfpb.ConfigBundle(
        id=b.id,
        digest=b.digest,
        media_type=b.media_type,
        size_bytes=b.size_bytes,
        created_at=ts(b.created_at),
        profiles=b.profiles,
        referencing_workers=b.referencing_workers,
        annotations=dict(b.annotations),
        referencing_worker_count=b.referencing_worker_count,
    )
