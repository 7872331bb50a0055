"""The stored form of domain values: compact JSON, written by hand, one version number.

Why by hand and not ``dataclasses.asdict``: the bytes on disk must outlive refactors of the model.
Every field is named here, enums are stored by value, and the decoder supplies *its own* zero
values for omitted fields (never the model's defaults, which may change) — so a field is omitted
only when it holds the zero value of its type (``""``, ``0``, ``False``, ``()``, ``None``).

Bodies are UTF-8 bytes encoded with ``surrogatepass``: model text can contain lone surrogates
(a provider's JSON ``"\\ud83d"`` split across stream chunks) and must round-trip exactly.

Bump :data:`CODEC_VERSION` for any change a previous decoder cannot read; stores record the version
they were written with and refuse to open data from a newer one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from engine import Message, ReasoningBlock, Role, StopReason, ToolCall, Usage
from runtime_server.model import (
    ConfigBundleRef,
    Diagnostic,
    DiagnosticLevel,
    InputCommitted,
    MessageCommitted,
    Mount,
    MountMode,
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
)

CODEC_VERSION = 1

Obj = dict[str, Any]
_T = TypeVar("_T")


class CodecError(ValueError):
    """Stored bytes that this codec cannot decode (unknown kind, missing field, bad JSON)."""


_decode_json = json.JSONDecoder().decode  # skips json.loads' per-call argument handling
# Enum(value) goes through EnumMeta.__call__; a dict is several times faster, and open() decodes
# every transcript entry.
_ROLES = {r.value: r for r in Role}
_STOP_REASONS = {r.value: r for r in StopReason}


# json.dumps() with options builds a new encoder per call; the writer encodes every event.
_encode_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
# The string encoder ensure_ascii=False uses (the C one where there is one).
_encode_str: Callable[[str], str] = json.encoder.encode_basestring


def _c_dumps() -> Callable[[Obj], str] | None:
    """JSONEncoder.encode builds a new C encoder on every call (about 1 µs, most of encoding a
    small body); this builds it once, with the same options. Circular checks are off: bodies are
    trees built fresh by this module. ``None`` where the C accelerator is missing, or if it would
    not write the very same text as ``_encode_json`` (then the plain encoder is used)."""
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return None
    encode = make(None, None, _encode_str, None, ":", ",", False, False, True)

    def c_dumps(obj: Obj) -> str:
        return "".join(encode(obj, 0))

    sample: Obj = {"a": [1, 2.5, True, None, "é\ud83d\n"], "b": {"c": -0.1, "d": 10**20}}
    return c_dumps if c_dumps(sample) == _encode_json(sample) else None


_dumps_text = _c_dumps() or _encode_json


def dumps(obj: Obj) -> bytes:
    return _dumps_text(obj).encode("utf-8", "surrogatepass")


def loads(body: bytes) -> Obj:
    value = _decode_json(body.decode("utf-8", "surrogatepass"))
    if not isinstance(value, dict):
        raise CodecError(f"expected a JSON object, got {type(value).__name__}")
    return value


def _put(obj: Obj, key: str, value: Any) -> None:
    """Set ``key`` unless ``value`` is the zero value of its type (keeps bodies small)."""
    if value:
        obj[key] = value


# --- engine values --------------------------------------------------------------------------------

_USAGE_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
)


def usage_to_obj(usage: Usage) -> Obj:
    obj: Obj = {}
    for name in _USAGE_FIELDS:
        _put(obj, name, getattr(usage, name))
    return obj


def usage_from_obj(obj: Mapping[str, Any]) -> Usage:
    return Usage(
        input_tokens=int(obj.get("input_tokens", 0)),
        output_tokens=int(obj.get("output_tokens", 0)),
        cache_read_tokens=int(obj.get("cache_read_tokens", 0)),
        cache_write_tokens=int(obj.get("cache_write_tokens", 0)),
        reasoning_tokens=int(obj.get("reasoning_tokens", 0)),
    )


def message_to_obj(message: Message) -> Obj:
    obj: Obj = {"role": message.role.value}
    _put(obj, "text", message.text)
    _put(obj, "reasoning", message.reasoning)
    _put(obj, "reasoning_signature", message.reasoning_signature)
    if message.tool_calls:
        obj["tool_calls"] = [
            [c.call_id, c.name, c.arguments, c.extra]
            if c.extra
            else [c.call_id, c.name, c.arguments]
            for c in message.tool_calls
        ]
    _put(obj, "tool_call_id", message.tool_call_id)
    _put(obj, "tool_name", message.tool_name)
    _put(obj, "is_error", message.is_error)
    if message.stop_reason is not None:
        obj["stop_reason"] = message.stop_reason.value
    _put(obj, "incomplete", message.incomplete)
    # Added without a codec bump: older decoders ignore these keys (and a 4th tool-call element).
    if message.reasoning_blocks:
        obj["reasoning_blocks"] = [
            [b.kind, b.text, b.signature, b.data, b.after_text, b.after_calls]
            if b.after_text or b.after_calls
            else [b.kind, b.text, b.signature, b.data]
            for b in message.reasoning_blocks
        ]
    _put(obj, "reasoning_field", message.reasoning_field)
    return obj


def message_from_obj(obj: Mapping[str, Any]) -> Message:
    stop = obj.get("stop_reason")
    return Message(
        role=_ROLES[obj["role"]],
        text=obj.get("text", ""),
        reasoning=obj.get("reasoning", ""),
        reasoning_signature=obj.get("reasoning_signature", ""),
        tool_calls=tuple(
            ToolCall(call_id=c[0], name=c[1], arguments=c[2], extra=c[3] if len(c) > 3 else "")
            for c in obj.get("tool_calls", ())
        ),
        tool_call_id=obj.get("tool_call_id", ""),
        tool_name=obj.get("tool_name", ""),
        is_error=bool(obj.get("is_error", False)),
        stop_reason=None if stop is None else _STOP_REASONS[stop],
        incomplete=bool(obj.get("incomplete", False)),
        reasoning_blocks=tuple(ReasoningBlock(*b) for b in obj.get("reasoning_blocks", ())),
        reasoning_field=obj.get("reasoning_field", ""),
    )


# --- runtime values -------------------------------------------------------------------------------


def worker_to_obj(worker: Worker) -> Obj:
    obj: Obj = {
        "worker_id": worker.worker_id,
        "runtime_id": worker.runtime_id,
        "state": worker.state.value,
        "profile": worker.profile,
    }
    _put(obj, "display_name", worker.display_name)
    if worker.labels:
        obj["labels"] = dict(worker.labels)
    _put(obj, "active_run_id", worker.active_run_id)
    _put(obj, "created_at", worker.created_at)
    _put(obj, "usage", usage_to_obj(worker.usage))
    if worker.workspace is not None:
        obj["workspace"] = {
            "root": worker.workspace.root,
            "mounts": [[m.path, m.mode.value] for m in worker.workspace.mounts],
        }
        if worker.workspace.root_mode is not MountMode.READ_ONLY:
            obj["workspace"]["root_mode"] = worker.workspace.root_mode.value
    if worker.config_bundle is not None:
        obj["config_bundle"] = [worker.config_bundle.id, worker.config_bundle.digest]
    _put(obj, "queued_runs", worker.queued_runs)
    if worker.capabilities:
        obj["capabilities"] = list(worker.capabilities)
    if worker.tools is not None:
        obj["tools"] = list(worker.tools)  # always written (even empty): absent = not recorded
    return obj


def worker_from_obj(obj: Mapping[str, Any]) -> Worker:
    ws = obj.get("workspace")
    bundle = obj.get("config_bundle")
    return Worker(
        worker_id=obj["worker_id"],
        runtime_id=obj["runtime_id"],
        state=WorkerState(obj["state"]),
        profile=obj["profile"],
        display_name=obj.get("display_name", ""),
        labels=dict(obj.get("labels", {})),
        active_run_id=obj.get("active_run_id", ""),
        created_at=float(obj.get("created_at", 0.0)),
        usage=usage_from_obj(obj.get("usage", {})),
        workspace=None
        if ws is None
        else Workspace(
            root=ws["root"],
            mounts=tuple(Mount(p, MountMode(m)) for p, m in ws["mounts"]),
            root_mode=MountMode(ws.get("root_mode", MountMode.READ_ONLY.value)),
        ),
        config_bundle=None if bundle is None else ConfigBundleRef(id=bundle[0], digest=bundle[1]),
        queued_runs=int(obj.get("queued_runs", 0)),
        capabilities=tuple(obj.get("capabilities", ())),
        tools=tuple(obj["tools"]) if "tools" in obj else None,
    )


def run_to_obj(run: Run, *, with_input: bool = True) -> Obj:
    """``with_input=False``: as if ``input_text`` were empty (the runs table's form)."""
    obj: Obj = {
        "run_id": run.run_id,
        "worker_id": run.worker_id,
        "state": run.state.value,
        "created_at": run.created_at,
    }
    if with_input:
        _put(obj, "input_text", run.input_text)
    _put(obj, "started_at", run.started_at)
    _put(obj, "finished_at", run.finished_at)
    _put(obj, "usage", usage_to_obj(run.usage))
    if run.error is not None:
        obj["error"] = [run.error.code, run.error.message]
    _put(obj, "stop_reason", run.stop_reason)
    return obj


def run_from_obj(obj: Mapping[str, Any]) -> Run:
    error = obj.get("error")
    return Run(
        run_id=obj["run_id"],
        worker_id=obj["worker_id"],
        state=RunState(obj["state"]),
        created_at=float(obj["created_at"]),
        input_text=obj.get("input_text", ""),
        started_at=float(obj.get("started_at", 0.0)),
        finished_at=float(obj.get("finished_at", 0.0)),
        usage=usage_from_obj(obj.get("usage", {})),
        error=None if error is None else RunError(code=error[0], message=error[1]),
        stop_reason=obj.get("stop_reason", ""),
    )


def entry_to_obj(entry: TranscriptEntry) -> Obj:
    return {
        "worker_id": entry.worker_id,
        "index": entry.index,
        "run_id": entry.run_id,
        "message": message_to_obj(entry.message),
        "created_at": entry.created_at,
        **({"seq": entry.seq} if entry.seq else {}),
    }


def entry_from_obj(obj: Mapping[str, Any]) -> TranscriptEntry:
    return TranscriptEntry(
        worker_id=obj["worker_id"],
        index=int(obj["index"]),
        run_id=obj["run_id"],
        message=message_from_obj(obj["message"]),
        created_at=float(obj["created_at"]),
        seq=int(obj.get("seq", 0)),
    )


# --- event payloads -------------------------------------------------------------------------------
# kind -> (type, encode, decode). The kind strings are stored in the events table: never rename one.

_Enc = Callable[[Any], Obj]
_Dec = Callable[[Mapping[str, Any]], Payload]


def _diagnostic_to_obj(d: Diagnostic) -> Obj:
    obj: Obj = {"level": d.level.value, "code": d.code, "message": d.message}
    _put(obj, "time", d.time)
    _put(obj, "worker_id", d.worker_id)
    _put(obj, "run_id", d.run_id)
    return obj


def _diagnostic_from_obj(o: Mapping[str, Any]) -> Diagnostic:
    return Diagnostic(
        level=DiagnosticLevel(o["level"]),
        code=o["code"],
        message=o["message"],
        time=float(o.get("time", 0.0)),
        worker_id=o.get("worker_id", ""),
        run_id=o.get("run_id", ""),
    )


_PAYLOADS: dict[str, tuple[type[Any], _Enc, _Dec]] = {
    "worker_created": (
        WorkerCreated,
        lambda p: {"worker": worker_to_obj(p.worker)},
        lambda o: WorkerCreated(worker_from_obj(o["worker"])),
    ),
    "worker_state_changed": (
        WorkerStateChanged,
        lambda p: {"previous": p.previous.value, "state": p.state.value},
        lambda o: WorkerStateChanged(WorkerState(o["previous"]), WorkerState(o["state"])),
    ),
    "run_queued": (
        RunQueued,
        lambda p: {"run": run_to_obj(p.run)},
        lambda o: RunQueued(run_from_obj(o["run"])),
    ),
    "run_started": (
        RunStarted,
        lambda p: {"run": run_to_obj(p.run)},
        lambda o: RunStarted(run_from_obj(o["run"])),
    ),
    "input_committed": (
        InputCommitted,
        lambda p: {"entry": entry_to_obj(p.entry)},
        lambda o: InputCommitted(entry_from_obj(o["entry"])),
    ),
    "text_delta": (
        TextDelta,
        lambda p: {"text": p.text},
        lambda o: TextDelta(o["text"]),
    ),
    "reasoning_delta": (
        ReasoningDelta,
        lambda p: {"text": p.text},
        lambda o: ReasoningDelta(o["text"]),
    ),
    "tool_call_started": (
        ToolCallStarted,
        lambda p: {"call_id": p.call_id, "tool_name": p.tool_name, "arguments": p.arguments},
        lambda o: ToolCallStarted(o["call_id"], o["tool_name"], o["arguments"]),
    ),
    "tool_call_finished": (
        ToolCallFinished,
        lambda p: {
            "call_id": p.call_id,
            "tool_name": p.tool_name,
            "result": p.result,
            "is_error": p.is_error,
        },
        lambda o: ToolCallFinished(o["call_id"], o["tool_name"], o["result"], bool(o["is_error"])),
    ),
    "message_committed": (
        MessageCommitted,
        lambda p: {"entry": entry_to_obj(p.entry)},
        lambda o: MessageCommitted(entry_from_obj(o["entry"])),
    ),
    "usage_reported": (
        UsageReported,
        lambda p: {"usage": usage_to_obj(p.usage)},
        lambda o: UsageReported(usage_from_obj(o["usage"])),
    ),
    "partial_discarded": (
        PartialDiscarded,
        lambda p: {"reason": p.reason},
        lambda o: PartialDiscarded(o["reason"]),
    ),
    "run_finished": (
        RunFinished,
        lambda p: {"run": run_to_obj(p.run)},
        lambda o: RunFinished(run_from_obj(o["run"])),
    ),
    "worker_stopped": (
        WorkerStopped,
        lambda p: {"reason": p.reason},
        lambda o: WorkerStopped(o["reason"]),
    ),
    "worker_deleted": (
        WorkerDeleted,
        lambda p: {},
        lambda o: WorkerDeleted(),
    ),
    "diagnostic": (Diagnostic, _diagnostic_to_obj, _diagnostic_from_obj),
}

_KIND_OF: dict[type[Any], str] = {cls: kind for kind, (cls, _, _) in _PAYLOADS.items()}

PAYLOAD_KINDS: frozenset[str] = frozenset(_PAYLOADS)


def encode_payload(payload: Payload) -> tuple[str, bytes]:
    """``(kind, body)`` for the events table (the SQLite writer takes shortcuts for the common
    kinds that write these very bytes: ``_sqlite_rows``)."""
    try:
        kind = _KIND_OF[type(payload)]
    except KeyError:
        raise CodecError(f"no codec for payload type {type(payload).__name__}") from None
    return kind, dumps(_PAYLOADS[kind][1](payload))


def decode_payload(kind: str, body: bytes) -> Payload:
    try:
        decode = _PAYLOADS[kind][2]
    except KeyError:
        raise CodecError(f"unknown event kind {kind!r}") from None
    return _decode(kind, decode, body)


def _decode(what: str, decode: Callable[[Mapping[str, Any]], _T], body: bytes) -> _T:
    try:
        return decode(loads(body))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise CodecError(f"cannot decode {what} body: {exc!r}") from exc


def encode_worker(worker: Worker) -> bytes:
    return dumps(worker_to_obj(worker))


def decode_worker(body: bytes) -> Worker:
    return _decode("worker", worker_from_obj, body)


def encode_run(run: Run, *, with_input: bool = True) -> bytes:
    """``with_input=False``: the body of ``replace(run, input_text="")``, without the copy."""
    return dumps(run_to_obj(run, with_input=with_input))


def decode_run(body: bytes) -> Run:
    return _decode("run", run_from_obj, body)


def encode_message(message: Message) -> bytes:
    return dumps(message_to_obj(message))


def decode_message(body: bytes) -> Message:
    return _decode("message", message_from_obj, body)
