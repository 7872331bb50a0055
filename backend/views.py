"""JSON views of the client's models, for the browser.

Built by walking the frozen dataclasses generically (so a field added to a model shows up without
edits here), with two exceptions decided here, because the browser must never see a host fact:

- a worker's ``workspace`` (host paths) is left out: the console shows whether a worker has one;
- free text a runtime writes about failures (diagnostic messages, run error messages) is
  scrubbed of URLs and HOST:PORT pairs (a provider's base URL, a runtime's address).

Model and user text are passed as they are: the page renders them as text, never as HTML. A
string UTF-8 cannot encode (a lone surrogate, in text an earlier version stored) is written with
U+FFFD in its place (:func:`utf8`), as the gRPC edge sends it: one such string made every answer
that included it a 500, and broke a worker's event stream at that event on every reconnect.
Runtime statuses are built field by field from what the page needs (never the target or token).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import json.encoder
from collections.abc import Mapping
from typing import Any

from starlette import responses

from backend.errors import scrub
from runtime_client import ReasoningDelta, TextDelta

__all__ = [
    "EventFrames",
    "JSONResponse",
    "event_view",
    "runtime_view",
    "to_json",
    "utf8",
]

_SKIP = frozenset({"raw", "workspace"})


def utf8(text: str) -> bytes:
    """``text`` as UTF-8, any lone surrogate as U+FFFD (only text that needs it pays)."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace").encode()


class JSONResponse(responses.JSONResponse):
    """Starlette's JSON answer, written with :func:`utf8` (Starlette's raises on a surrogate)."""

    def render(self, content: Any) -> bytes:
        return utf8(json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")))


def to_json(obj: Any) -> Any:
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    if isinstance(obj, enum.Enum):
        return obj.value
    names = _fields(type(obj))
    if names is not None:
        out: dict[str, Any] = {name: to_json(getattr(obj, name)) for name in names}
        if type(obj).__name__ in ("RunError", "Diagnostic"):  # the runtime's own words
            out["message"] = scrub(out["message"])
        if "workspace" in _ALL_FIELDS[type(obj)]:
            out["has_workspace"] = getattr(obj, "workspace", None) is not None
        return out
    if isinstance(obj, Mapping):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple | set | frozenset):
        return [to_json(v) for v in obj]
    return str(obj)


_FIELDS: dict[type, tuple[str, ...] | None] = {}
_ALL_FIELDS: dict[type, frozenset[str]] = {}


def _fields(cls: type) -> tuple[str, ...] | None:
    """The fields shown of a dataclass type (None: not a dataclass); cached per type, as the
    event path walks thousands of events a second."""
    try:
        return _FIELDS[cls]
    except KeyError:
        pass
    names: tuple[str, ...] | None = None
    if dataclasses.is_dataclass(cls):
        every = [f.name for f in dataclasses.fields(cls)]
        _ALL_FIELDS[cls] = frozenset(every)
        names = tuple(n for n in every if n not in _SKIP)
    _FIELDS[cls] = names
    return names


def event_view(event: Any) -> dict[str, Any]:
    """An Event for the browser: seq, worker, run, time, ``kind`` (the payload's oneof name) and
    the payload's fields."""
    payload = event.payload
    return {
        "seq": event.seq,
        "worker_id": event.worker_id,
        "run_id": event.run_id,
        "time": event.time,
        "kind": getattr(payload, "KIND", "unknown"),
        "payload": to_json(payload),
    }


_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_string = json.encoder.encode_basestring  # json's own C escaper (what dumps uses here)
# What follows a delta's time in its frame, by payload class: text and reasoning deltas are most
# of a run's events, and are written directly, without building the generic view.
_DELTA_TAILS: dict[type, str] = {
    cls: f',"kind":"{cls.KIND}","payload":{{"text":' for cls in (TextDelta, ReasoningDelta)
}


class EventFrames:
    """One stream's encoder of events to their SSE frames (``id:`` + ``data:``), each equal to
    encoding :func:`event_view`. A text or reasoning delta is written as one string, its
    ``worker_id`` and ``run_id`` escaped once per run of the stream rather than per event (a
    stream is one worker's, and a run's deltas share its id); a finite float's JSON is its
    ``repr``. Every other event goes through the generic view."""

    __slots__ = ("_head", "_run_id", "_worker_id")

    def __init__(self) -> None:
        self._worker_id: str | None = None
        self._run_id: str | None = None
        self._head = ""  # ',"worker_id":...,"run_id":...,"time":' of those two

    def encode(self, event: Any) -> bytes:
        payload = event.payload
        tail = _DELTA_TAILS.get(payload.__class__)
        t = event.time
        # (t - t is nan for inf and nan, which JSON writes otherwise than repr)
        if tail is not None and type(t) is float and t - t == 0.0:
            worker_id, run_id = event.worker_id, event.run_id
            if worker_id != self._worker_id or run_id != self._run_id:
                self._head = f',"worker_id":{_string(worker_id)},"run_id":{_string(run_id)},"time":'
                self._worker_id, self._run_id = worker_id, run_id
            seq = event.seq
            frame = (
                f'id: {seq}\ndata: {{"seq":{seq}{self._head}{t!r}{tail}'
                f"{_string(payload.text)}}}}}\n\n"
            )
        else:
            frame = f"id: {event.seq}\ndata: {_dumps(event_view(event))}\n\n"
        try:
            return frame.encode()
        except UnicodeEncodeError:
            return utf8(frame)


def runtime_view(status: Any) -> dict[str, Any]:
    """A registry RuntimeStatus: identity, health and load. Field by field on purpose: a status
    object may learn about its target later, and that must not reach a browser."""
    info = getattr(status, "info", None)
    profiles = getattr(status, "profiles", ()) or ()
    load = getattr(status, "load", None)
    return {
        "runtime_id": status.runtime_id,
        "alias": status.alias,
        "kind": str(getattr(status, "kind", "")),
        "state": to_json(status.state),
        "since": getattr(status, "since", 0.0),
        "last_error": scrub(str(getattr(status, "last_error", "") or "")),
        "version": getattr(info, "version", "") if info is not None else "",
        "store_kind": getattr(info, "store_kind", "") if info is not None else "",
        "profiles": [
            {"name": p.name, "description": p.description, "builtin": p.builtin} for p in profiles
        ],
        "load": to_json(load),
        "max_input_chars": info.limits.max_input_chars if info is not None else 0,
    }
