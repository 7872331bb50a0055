"""Server domain values -> the client's models (the one public vocabulary), for the embedded handle
(:mod:`runtime_server.embedded`); and the client's request values -> domain values.

The rule is "what a remote caller would receive": every object is built by keyword, every field
the wire carries is carried, fields the wire drops are dropped (``Run.input_text``, a message's
reasoning blocks), and timestamps are quantised exactly as a protobuf ``Timestamp`` round trip
quantises them (whole seconds plus whole nanoseconds), so an embedded and a remote answer for the
same state compare equal. Enum tables are built once, by member name, so an enum member added on
one side and not the other fails at import.

Free text is made valid Unicode (``_text``: a lone surrogate becomes U+FFFD, as the gRPC edge's
``wire_safe`` sends it): the Runtime refuses such text in requests and the engine repairs what
providers and tools produce, but a store written by an earlier version can hold some, and an
embedded caller got it raw: a string its own JSON encoder (the Backend's console) could not
write, where a remote caller got U+FFFD.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import engine
import runtime_client as c
from engine.wire import valid_text as _text
from runtime_server import errors
from runtime_server import model as m
from runtime_server import runtime as rt

__all__ = [
    "accepted",
    "config_bundle",
    "created",
    "diagnostic",
    "entry",
    "event",
    "events_page",
    "heartbeat",
    "page",
    "profile",
    "run",
    "runtime_info",
    "usage",
    "usage_summary",
    "worker",
    "workspace_claim",
]

S = TypeVar("S", bound=enum.Enum)
C = TypeVar("C", bound=enum.Enum)
T = TypeVar("T")
U = TypeVar("U")


def _by_name(server: type[S], client: type[C]) -> dict[S, C]:
    return {member: client[member.name] for member in server}


_WORKER_STATE = _by_name(m.WorkerState, c.WorkerState)
_RUN_STATE = _by_name(m.RunState, c.RunState)
_MOUNT_MODE = _by_name(m.MountMode, c.MountMode)
_LEVEL = _by_name(m.DiagnosticLevel, c.DiagnosticLevel)
_ROLE = _by_name(engine.Role, c.Role)
_RUNTIME_STATE = _by_name(rt.RuntimeState, c.RuntimeState)
_STORE_STATE = _by_name(rt.StoreState, c.StoreState)
_WORKER_STATE_IN = {v: k for k, v in _WORKER_STATE.items()}
_BUSY_POLICY_IN = {c.BusyPolicy[p.name]: p for p in m.BusyPolicy}


def ts(t: float) -> float:
    """``t`` as a remote caller reads it: a Timestamp keeps whole seconds and whole nanoseconds."""
    if not t:
        return 0.0
    seconds = int(t)
    return seconds + int((t - seconds) * 1e9) * 1e-9


def usage(u: engine.Usage) -> c.Usage:
    return c.Usage(
        input_tokens=u.input_tokens,
        output_tokens=u.output_tokens,
        cache_read_tokens=u.cache_read_tokens,
        cache_write_tokens=u.cache_write_tokens,
        reasoning_tokens=u.reasoning_tokens,
        total_tokens=u.total_tokens,
    )


def workspace(w: m.Workspace) -> c.Workspace:
    return c.Workspace(
        root=w.root,
        mounts=tuple(c.Mount(path=x.path, mode=_MOUNT_MODE[x.mode]) for x in w.mounts),
        root_mode=_MOUNT_MODE[w.root_mode],
    )


def worker(w: m.Worker) -> c.Worker:
    bundle = w.config_bundle
    return c.Worker(
        worker_id=w.worker_id,
        runtime_id=w.runtime_id,
        state=_WORKER_STATE[w.state],
        profile=w.profile,
        display_name=_text(w.display_name),
        labels=dict(w.labels),
        active_run_id=w.active_run_id,
        created_at=ts(w.created_at),
        usage=usage(w.usage),
        workspace=workspace(w.workspace) if w.workspace is not None else None,
        config_bundle=(
            c.ConfigBundleRef(id=bundle.id, digest=bundle.digest) if bundle is not None else None
        ),
        queued_runs=w.queued_runs,
        capabilities=tuple(w.capabilities),
        tools=tuple(w.tools or ()),
    )


def run(r: m.Run) -> c.Run:
    return c.Run(
        run_id=r.run_id,
        worker_id=r.worker_id,
        state=_RUN_STATE[r.state],
        created_at=ts(r.created_at),
        started_at=ts(r.started_at),
        finished_at=ts(r.finished_at),
        usage=usage(r.usage),
        error=c.RunError(code=r.error.code, message=_text(r.error.message)) if r.error else None,
        stop_reason=r.stop_reason,
    )


def message(msg: engine.Message) -> c.Message:
    return c.Message(
        role=_ROLE[msg.role],
        text=_text(msg.text),
        reasoning=_text(msg.reasoning),
        tool_calls=tuple(
            c.ToolCall(call_id=x.call_id, name=x.name, arguments=_text(x.arguments))
            for x in msg.tool_calls
        ),
        tool_call_id=msg.tool_call_id,
        tool_name=msg.tool_name,
        is_error=msg.is_error,
        stop_reason=msg.stop_reason.value if msg.stop_reason else "",
        incomplete=msg.incomplete,
    )


def entry(e: m.TranscriptEntry) -> c.TranscriptEntry:
    return c.TranscriptEntry(
        worker_id=e.worker_id,
        index=e.index,
        run_id=e.run_id,
        created_at=ts(e.created_at),
        message=message(e.message),
        seq=e.seq,
    )


def diagnostic(d: m.Diagnostic) -> c.Diagnostic:
    return c.Diagnostic(
        level=_LEVEL[d.level],
        code=d.code,
        message=_text(d.message),
        time=ts(d.time),
        worker_id=d.worker_id,
        run_id=d.run_id,
    )


def workspace_claim(claim: rt.Claim) -> c.WorkspaceClaim:
    return c.WorkspaceClaim(
        worker_id=claim.worker_id, path=claim.path, mode=_MOUNT_MODE[claim.mode]
    )


def profile(p: rt.Profile) -> c.Profile:
    return c.Profile(
        name=p.name,
        provider=p.provider.name,
        provider_kind=p.provider.kind,
        model=p.model,
        description=p.description,
        tools=tuple(p.tools),
        builtin=p.builtin,
        max_tokens=p.max_tokens or 0,
        max_tool_rounds=p.max_tool_rounds,
        request_deadline_s=p.request_deadline_s,
        context_max_tokens=p.context.max_tokens,
        context_max_messages=p.context.max_messages,
        context_compaction=p.context.compaction,
    )


def limits(lim: m.Limits) -> c.Limits:
    # Field by field, by keyword, under the client's names.
    # (the parity test pins that both models have the same limit fields)
    return c.Limits(**{f: getattr(lim, f) for f in _LIMIT_FIELDS})


_LIMIT_FIELDS = tuple(c.Limits.__dataclass_fields__)


def runtime_info(info: rt.RuntimeInfo) -> c.RuntimeInfo:
    by = info.workers_by_state
    return c.RuntimeInfo(
        runtime_id=info.runtime_id,
        state=_RUNTIME_STATE[info.state],
        version=info.version,
        store_kind=info.store_kind,
        started_at=ts(info.started_at),
        workers=c.WorkerCounts(
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
        capabilities=c.Capabilities(
            provider_kinds=tuple(info.provider_kinds),
            profiles=tuple(info.profiles),
            features=tuple(info.features),
            worker_capabilities=tuple(info.worker_capabilities),
        ),
        usage=usage(info.usage),
        auth_required=False,  # in-process: there is no token to present
        lifetime_usage=usage(info.lifetime_usage),
        lifetime_runs=info.lifetime_runs,
        workspace_claims=info.workspace_claims,
        workspace_claims_read_write=info.workspace_claims_read_write,
        store_state=_STORE_STATE[info.store_state],
        store_error=info.store_error,
        memory_bytes=info.memory_bytes,
    )


# --- events ---

_WORKER_DELETED = c.WorkerDeleted()

_PAYLOAD: dict[type, Callable[[Any], c.Payload]] = {
    m.TextDelta: lambda p: c.TextDelta(text=_text(p.text)),
    m.ReasoningDelta: lambda p: c.ReasoningDelta(text=_text(p.text)),
    m.WorkerCreated: lambda p: c.WorkerCreated(worker=worker(p.worker)),
    m.WorkerStateChanged: lambda p: c.WorkerStateChanged(
        previous=_WORKER_STATE[p.previous], state=_WORKER_STATE[p.state]
    ),
    m.RunQueued: lambda p: c.RunQueued(run=run(p.run)),
    m.RunStarted: lambda p: c.RunStarted(run=run(p.run)),
    m.InputCommitted: lambda p: c.InputCommitted(entry=entry(p.entry)),
    m.ToolCallStarted: lambda p: c.ToolCallStarted(
        call_id=p.call_id, tool_name=p.tool_name, arguments=_text(p.arguments)
    ),
    m.ToolCallFinished: lambda p: c.ToolCallFinished(
        call_id=p.call_id, tool_name=p.tool_name, result=_text(p.result), is_error=p.is_error
    ),
    m.MessageCommitted: lambda p: c.MessageCommitted(entry=entry(p.entry)),
    m.UsageReported: lambda p: c.UsageReported(usage=usage(p.usage)),
    m.PartialDiscarded: lambda p: c.PartialDiscarded(reason=_text(p.reason)),
    m.RunFinished: lambda p: c.RunFinished(run=run(p.run)),
    m.WorkerStopped: lambda p: c.WorkerStopped(reason=_text(p.reason)),
    m.WorkerDeleted: lambda p: _WORKER_DELETED,
    m.Diagnostic: diagnostic,
}


def event(e: m.Event) -> c.Event:
    # time: an event's Timestamp is always set, so 0.0 stays 0.0 either way
    return c.Event(
        seq=e.seq,
        worker_id=e.worker_id,
        run_id=e.run_id,
        time=ts(e.time),
        payload=_PAYLOAD[type(e.payload)](e.payload),
    )


def heartbeat(last_seq: int, t: float) -> c.Event:
    return c.Event(
        seq=0, worker_id="", run_id="", time=ts(t), payload=c.Heartbeat(last_seq=last_seq)
    )


# --- responses ---


def page(p: m.Page[T], convert: Callable[[T], U]) -> c.Page[U]:
    return c.Page(
        items=tuple(convert(x) for x in p.items),
        next_page_token=p.next_page_token,
        total_size=p.total_size,
    )


def transcript_page(p: m.TranscriptPage) -> c.TranscriptPage:
    return c.TranscriptPage(
        items=tuple(entry(x) for x in p.items),
        next_page_token=p.next_page_token,
        total_size=p.total_size,
        resume_after_seq=p.resume_after_seq,
    )


def events_page(p: rt.EventsPage, after_seq: int) -> c.EventsPage:
    return c.EventsPage(
        events=tuple(event(e) for e in p.events),
        last_seq=p.last_seq,
        oldest_seq=p.oldest_seq,
        # as the servicer computes it: the cursor stays put on an empty page
        next_after_seq=p.events[-1].seq if p.events else after_seq,
    )


def created(x: rt.Created) -> c.Created:
    return c.Created(
        worker=worker(x.worker),
        seq=x.seq,
        initial_run=run(x.initial_run) if x.initial_run is not None else None,
    )


def accepted(x: rt.Accepted) -> c.Accepted:
    return c.Accepted(run=run(x.run), seq=x.seq)


def usage_summary(x: rt.UsageSummary) -> c.UsageSummary:
    return c.UsageSummary(
        usage=usage(x.usage),
        runs=x.runs,
        lifetime_usage=usage(x.lifetime_usage),
        lifetime_runs=x.lifetime_runs,
    )


# --- requests (client values -> domain), with the gRPC edge's checks ---


def _mount_mode_in(mode: c.MountMode) -> m.MountMode:
    # UNSPECIFIED travels as 0, which the server reads as READ_ONLY
    mode = c.MountMode(mode)
    return m.MountMode.READ_ONLY if mode is c.MountMode.UNSPECIFIED else m.MountMode[mode.name]


def workspace_in(w: c.Workspace | None) -> m.Workspace | None:
    if w is None:
        return None
    mounts = tuple(m.Mount(path=x.path, mode=_mount_mode_in(x.mode)) for x in w.mounts)
    if not w.root:
        raise errors.InvalidArgument("workspace.root", "is required when workspace is set")
    return m.Workspace(root=w.root, mounts=mounts, root_mode=_mount_mode_in(w.root_mode))


def config_bundle_in(b: c.ConfigBundleRef | None) -> m.ConfigBundleRef | None:
    return None if b is None else m.ConfigBundleRef(id=b.id, digest=b.digest)


def worker_state_in(state: c.WorkerState | None) -> m.WorkerState | None:
    # as the client sends it: None and UNSPECIFIED both mean "any state"
    value = c.WorkerState(state) if state else c.WorkerState.UNSPECIFIED
    return None if value is c.WorkerState.UNSPECIFIED else _WORKER_STATE_IN[value]


def busy_policy_in(policy: c.BusyPolicy) -> m.BusyPolicy:
    return _BUSY_POLICY_IN[c.BusyPolicy(policy)]


def labels_in(labels: Mapping[str, str] | None) -> dict[str, str]:
    return dict(labels or {})


def strings_in(values: Sequence[str]) -> tuple[str, ...]:
    return tuple(values)


def int32_in(value: int) -> int:
    """A request's int32 field, refused as the client's protobuf runtime refuses it (before
    anything is sent: ``ValueError``)."""
    if not -(2**31) <= value < 2**31:
        raise ValueError(f"Value out of range: {value}")
    return value


def uint64_in(value: int) -> int:
    """A request's uint64 field (``after_seq``), refused as the client's protobuf runtime does."""
    if not 0 <= value < 2**64:
        raise ValueError(f"Value out of range: {value}")
    return value


def config_bundle(b: m.ConfigBundle) -> c.ConfigBundle:
    return c.ConfigBundle(
        id=b.id,
        digest=b.digest,
        media_type=b.media_type,
        size_bytes=b.size_bytes,
        created_at=ts(b.created_at),
        profiles=tuple(b.profiles),
        referencing_workers=tuple(b.referencing_workers),
        annotations=dict(b.annotations),
        referencing_worker_count=b.referencing_worker_count,
    )
