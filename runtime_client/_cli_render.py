"""Output of the ``worker-runtime`` client commands: JSON conversion, tables, one-line event
and run summaries (pure functions of client models)."""

from __future__ import annotations

import dataclasses
import enum
import json
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from runtime_client._models import (
    Diagnostic,
    Event,
    InputCommitted,
    MessageCommitted,
    PartialDiscarded,
    ReasoningDelta,
    Run,
    RunFinished,
    RunQueued,
    RunStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptEntry,
    Usage,
    UsageReported,
    Worker,
    WorkerCreated,
    WorkerStateChanged,
    WorkerStopped,
)

# --- output helpers ---------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Event):
        d = {"kind": obj.kind}
        d.update(
            (f.name, _jsonable(getattr(obj, f.name)))
            for f in dataclasses.fields(obj)
            if f.name != "raw"  # the wire message: not JSON, and duplicates the rest
        )
        return d
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [_jsonable(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    return obj


def _print_json(obj: Any, *, compact: bool = False, file: TextIO | None = None) -> None:
    text = json.dumps(
        _jsonable(obj),
        ensure_ascii=False,
        indent=None if compact else 2,
        separators=(",", ":") if compact else None,
    )
    print(text, file=file or sys.stdout, flush=compact)


def _time(t: float) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _block(rows: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _usage_text(u: Usage) -> str:
    text = f"in {u.input_tokens}, out {u.output_tokens}, total {u.total_tokens}"
    if u.cache_read_tokens or u.cache_write_tokens:
        text += f", cache read {u.cache_read_tokens} / write {u.cache_write_tokens}"
    if u.reasoning_tokens:
        text += f", reasoning {u.reasoning_tokens}"
    return text


def _labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _worker_block(w: Worker) -> None:
    rows: list[tuple[str, Any]] = [
        ("worker_id", w.worker_id),
        ("runtime_id", w.runtime_id),
        ("state", w.state),
        ("profile", w.profile),
        ("display_name", w.display_name or "-"),
        ("labels", _labels_text(w.labels)),
        ("active_run_id", w.active_run_id or "-"),
        ("queued_runs", w.queued_runs),
        ("created_at", _time(w.created_at)),
        ("usage", _usage_text(w.usage)),
    ]
    if w.workspace is not None:
        mounts = ", ".join(f"{m.path} ({m.mode.lower()})" for m in w.workspace.mounts)
        root = f"{w.workspace.root} ({w.workspace.root_mode.lower()})"
        rows.append(("workspace", root + (f" [{mounts}]" if mounts else "")))
    rows.append(("capabilities", ", ".join(w.capabilities) or "- (the profile's tools)"))
    rows.append(("tools", ", ".join(w.tools) or "-"))
    if w.config_bundle is not None:
        rows.append(("config_bundle", f"{w.config_bundle.id}@{w.config_bundle.digest}"))
    _block(rows)


def _run_line(r: Run) -> str:
    text = f"run {r.run_id} {r.state}"
    if r.error is not None:
        # a cancelled run's error code is CANCELLED again: say it once
        code = "" if r.error.code == str(r.state) else f"{r.error.code}: "
        text += f": {code}{r.error.message}"
    return text


def _run_block(r: Run) -> None:
    rows: list[tuple[str, Any]] = [
        ("run_id", r.run_id),
        ("worker_id", r.worker_id),
        ("state", r.state),
        ("created_at", _time(r.created_at)),
        ("started_at", _time(r.started_at)),
        ("finished_at", _time(r.finished_at)),
        ("usage", _usage_text(r.usage)),
        ("stop_reason", r.stop_reason or "-"),
    ]
    if r.error is not None:
        rows.append(("error", f"{r.error.code}: {r.error.message}"))
    _block(rows)


def _entry_summary(e: TranscriptEntry) -> str:
    m = e.message
    parts = [m.role.lower()]
    if m.tool_name:
        parts.append(f"{m.tool_name}{' (error)' if m.is_error else ''}")
    if m.text:
        parts.append(repr(_short(m.text)))
    parts.extend(f"call {c.name}({_short(c.arguments, 40)})" for c in m.tool_calls)
    return " ".join(parts)


def _event_summary(ev: Event) -> str:
    p = ev.payload
    if isinstance(p, TextDelta | ReasoningDelta):
        return repr(_short(p.text))
    if isinstance(p, ToolCallStarted):
        return f"{p.tool_name}({_short(p.arguments, 40)}) id={p.call_id}"
    if isinstance(p, ToolCallFinished):
        flag = " ERROR" if p.is_error else ""
        return f"{p.tool_name}{flag} -> {_short(p.result, 40)!r} id={p.call_id}"
    if isinstance(p, RunQueued | RunStarted | RunFinished):
        return _run_line(p.run)[len("run ") + len(p.run.run_id) + 1 :]
    if isinstance(p, WorkerCreated):
        return f"profile={p.worker.profile} name={p.worker.display_name!r}"
    if isinstance(p, WorkerStateChanged):
        return f"{p.previous} -> {p.state}"
    if isinstance(p, InputCommitted | MessageCommitted):
        return f"#{p.entry.index} {_entry_summary(p.entry)}"
    if isinstance(p, UsageReported):
        return _usage_text(p.usage)
    if isinstance(p, PartialDiscarded | WorkerStopped):
        return p.reason
    if isinstance(p, Diagnostic):
        return f"{p.level} {p.code}: {p.message}"
    return ""


def _event_line(ev: Event) -> str:
    ids = f"w={ev.worker_id or '-'} r={ev.run_id or '-'}"
    return f"{ev.seq} {_time(ev.time)} {ev.kind} {ids} {_event_summary(ev)}".rstrip()
