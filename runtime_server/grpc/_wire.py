"""Events as the bytes a stream sends: encoded once per event, and sent as they are.

The two subscription streams used to hand gRPC a message per send: a ``pb.Event`` (built from
the domain event: ~4.7 µs, most of it the keyword construction of the message and its
Timestamp), or an ``EventBatch`` built from such messages — which *copies* each one into the
batch (~1.2 µs an event) before serialising it all again. Their sizes for the batch budget came
from a separate estimate (``wire_size.event_size``, ~3 µs an event).

Here an event is encoded straight to protobuf's wire format: the envelope (seq, ids, time) by
hand, and by hand too the payloads every run sends (deltas, Run, TranscriptEntry, Usage, state
changes); the rarer ones through their generated class. Measured against building the message
and serialising it: a delta 1.9 µs vs 3.2, a RunFinished 10 vs 14, an InputCommitted 6 vs 10.
The bytes are exactly the ones ``pb.Event.SerializeToString()`` gives (fields in number order,
defaults left out; a test compares them for every payload type), so any client decodes them as
before. An ``EventBatch`` is ``events = 1`` repeated: its bytes
are each event's bytes behind a tag and a length, joined — nothing is copied or re-encoded, and
a batch's size is known exactly.

:func:`send_encoded` registers the two stream methods with a serializer that sends ``bytes``
as they are and serialises anything else (heartbeats) as before.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import attrgetter
from typing import Any

import grpc

from runtime_client.api import types_pb2 as pb
from runtime_server import model as m
from runtime_server.grpc import _convert as cv

_U64 = (1 << 64) - 1
# the most bytes an event's frame inside an EventBatch adds: its tag and a length varint
FRAME_OVERHEAD = 1 + 5
_FIELDS = pb.Event.DESCRIPTOR.fields_by_name


def varint(n: int) -> bytes:
    """Protobuf's base-128 varint; a negative int64/int32 as its 64-bit two's complement.
    Unrolled to five bytes (every seq, length, time and nano count in practice)."""
    if n < 0x80:
        if n >= 0:
            return _SMALL[n]
        n &= _U64
    elif n < 0x4000:
        return bytes(((n & 0x7F) | 0x80, n >> 7))
    elif n < 0x200000:
        return bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, n >> 14))
    elif n < 0x10000000:
        return bytes(
            ((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80, ((n >> 14) & 0x7F) | 0x80, n >> 21)
        )
    elif n < 0x800000000:
        return bytes(
            (
                (n & 0x7F) | 0x80,
                ((n >> 7) & 0x7F) | 0x80,
                ((n >> 14) & 0x7F) | 0x80,
                ((n >> 21) & 0x7F) | 0x80,
                n >> 28,
            )
        )
    n &= _U64
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


_SMALL = [bytes((i,)) for i in range(0x80)]


def _tag(field_number: int) -> bytes:
    return varint((field_number << 3) | 2)  # length-delimited


def _text_payload(tag: bytes) -> Callable[[Any], bytes]:
    """TextDelta / ReasoningDelta: ``string text = 1`` (a delta's payload, by hand)."""

    def encode(p: Any) -> bytes:
        text: str = p.text
        if not text:
            return tag + b"\x00"
        b = text.encode()
        inner = b"\x0a" + varint(len(b)) + b
        return tag + varint(len(inner)) + inner

    return encode


def _generic_payload(kind: type) -> Callable[[Any], bytes]:
    """Any other payload: the converter's sub-message, serialised behind its field's tag."""
    build = cv._PAYLOAD[kind]

    def encode(p: Any) -> bytes:
        ((name, message),) = build(p).items()
        body: bytes = message.SerializeToString(deterministic=True)
        return _tag(_FIELDS[name].number) + varint(len(body)) + body

    return encode


# --- the payloads of every run, by hand (the Run, TranscriptEntry and Usage messages) ---


def _str(tag: bytes, text: str) -> bytes:
    if not text:
        return b""
    b = text.encode()
    return tag + varint(len(b)) + b


def _uint(tag: bytes, n: int) -> bytes:
    return tag + varint(n) if n else b""


def _sub(tag: bytes, body: bytes) -> bytes:
    """A set message field (present even when empty)."""
    return tag + varint(len(body)) + body


def _time(tag: bytes, t: float) -> bytes:
    """A Timestamp field as ``_convert.ts`` sets it: absent for 0."""
    if not t:
        return b""
    seconds = int(t)
    nanos = int((t - seconds) * 1e9)
    if seconds != _last_second[0]:  # (shared with event_bytes: one second's field, kept)
        _last_second[:] = (seconds, b"\x08" + varint(seconds) if seconds else b"")
    body: bytes = _last_second[1] + (b"\x10" + varint(nanos) if nanos else b"")
    return tag + _SMALL[len(body)] + body  # at most 2 + 10 + 1 + 10 bytes


def _usage(u: Any) -> bytes:
    i, o = u.input_tokens, u.output_tokens
    cr, cw, r = u.cache_read_tokens, u.cache_write_tokens, u.reasoning_tokens
    if not (i or o or cr or cw or r):
        return b""  # (a run's usage before its first request: every field at its default)
    return b"".join(
        (
            _uint(b"\x08", i),
            _uint(b"\x10", o),
            _uint(b"\x18", cr),
            _uint(b"\x20", cw),
            _uint(b"\x28", r),
            _uint(b"\x30", u.total_tokens),
        )
    )


# (run_id, worker_id) -> a Run's first two fields: a run's three Run events carry the same pair.
# Bounded like _IDS.
_RUN_IDS: dict[tuple[str, str], bytes] = {}
_RUN_STATE_FIELD = {state: _uint(b"\x18", number) for state, number in cv.RUN_STATE.items()}


def _run(r: m.Run) -> bytes:
    key = (r.run_id, r.worker_id)
    ids = _RUN_IDS.get(key)
    if ids is None:
        if len(_RUN_IDS) >= _IDS_MAX:
            _RUN_IDS.clear()
        ids = _RUN_IDS[key] = _str(b"\x0a", key[0]) + _str(b"\x12", key[1])
    usage = _usage(r.usage)
    error = r.error
    return b"".join(
        (
            ids,
            _RUN_STATE_FIELD[r.state],
            _time(b"\x22", r.created_at),
            _time(b"\x2a", r.started_at),
            _time(b"\x32", r.finished_at),
            b"\x3a" + varint(len(usage)) + usage,
            b""
            if error is None
            else _sub(b"\x42", _str(b"\x0a", error.code) + _str(b"\x12", error.message)),
            _str(b"\x4a", r.stop_reason),
        )
    )


_INCOMPLETE = varint(70 << 3)  # Message.incomplete = 70 (varint)
_ENTRY_SEQ = varint(140 << 3)  # TranscriptEntry.seq = 140 (varint)


_ROLE_FIELD = {role: _uint(b"\x08", number) for role, number in cv.ROLE.items()}


def _message(msg: Any) -> bytes:
    calls = (
        b"".join(
            _sub(
                b"\x22",
                _str(b"\x0a", c.call_id) + _str(b"\x12", c.name) + _str(b"\x1a", c.arguments),
            )
            for c in msg.tool_calls
        )
        if msg.tool_calls
        else b""
    )
    return b"".join(
        (
            _ROLE_FIELD[msg.role],
            _str(b"\x12", msg.text),
            _str(b"\x1a", msg.reasoning),
            calls,
            _str(b"\x2a", msg.tool_call_id),
            _str(b"\x32", msg.tool_name),
            b"\x38\x01" if msg.is_error else b"",
            _str(b"\x42", msg.stop_reason.value if msg.stop_reason else ""),
            _INCOMPLETE + b"\x01" if msg.incomplete else b"",
        )
    )


def _entry(e: m.TranscriptEntry) -> bytes:
    return b"".join(
        (
            _str(b"\x0a", e.worker_id),
            _uint(b"\x10", e.index),
            _str(b"\x1a", e.run_id),
            _time(b"\x22", e.created_at),
            _sub(b"\x2a", _message(e.message)),
            _uint(_ENTRY_SEQ, e.seq),
        )
    )


def _holding(field: str, attr: str, body: Callable[[Any], bytes]) -> Callable[[Any], bytes]:
    """A payload whose message holds one message field (``Run run = 1`` and the like): the
    payload's ``attr`` encoded by ``body``."""
    tag = _tag(_FIELDS[field].number)
    get = attrgetter(attr)

    def encode(p: Any) -> bytes:
        return _sub(tag, _sub(b"\x0a", body(get(p))))

    return encode


def _state_changed(p: m.WorkerStateChanged) -> bytes:
    body = _uint(b"\x08", cv.WORKER_STATE[p.previous]) + _uint(b"\x10", cv.WORKER_STATE[p.state])
    return _sub(_STATE_CHANGED, body)


_STATE_CHANGED = _tag(_FIELDS["worker_state_changed"].number)
_BY_FIELD: tuple[tuple[type, str, str, Callable[[Any], bytes]], ...] = (
    (m.RunQueued, "run_queued", "run", _run),
    (m.RunStarted, "run_started", "run", _run),
    (m.RunFinished, "run_finished", "run", _run),
    (m.InputCommitted, "input_committed", "entry", _entry),
    (m.MessageCommitted, "message_committed", "entry", _entry),
    (m.UsageReported, "usage_reported", "usage", _usage),
)

_PAYLOAD: dict[type, Callable[[Any], bytes]] = {k: _generic_payload(k) for k in cv._PAYLOAD}
_PAYLOAD[m.TextDelta] = _text_payload(_tag(_FIELDS["text_delta"].number))
_PAYLOAD[m.ReasoningDelta] = _text_payload(_tag(_FIELDS["reasoning_delta"].number))
_PAYLOAD[m.WorkerStateChanged] = _state_changed
for _kind, _field, _attr, _body in _BY_FIELD:
    _PAYLOAD[_kind] = _holding(_field, _attr, _body)


def _ids(worker_id: str, run_id: str) -> bytes:
    out = b""
    if worker_id:
        w = worker_id.encode()
        out = b"\x12" + varint(len(w)) + w
    if run_id:
        r = run_id.encode()
        out += b"\x1a" + varint(len(r)) + r
    return out


# (worker_id, run_id) -> their two encoded fields: a run's events all carry the same pair.
# Bounded: cleared when full (a few thousand pairs in flight at most; re-encoding is cheap).
_IDS: dict[tuple[str, str], bytes] = {}
_IDS_MAX = 4096
_last_second: list[Any] = [0, b""]  # (seconds, its encoded Timestamp field)


def event_bytes(e: m.Event) -> bytes:
    """``cv.event(e).SerializeToString()``, without building the message."""
    key = (e.worker_id, e.run_id)
    ids = _IDS.get(key)
    if ids is None:
        if len(_IDS) >= _IDS_MAX:
            _IDS.clear()
        ids = _IDS[key] = _ids(*key)
    t = e.time
    seconds = int(t)
    nanos = int((t - seconds) * 1e9)
    if seconds != _last_second[0]:  # the seconds field changes once a second: encode it then
        _last_second[:] = (seconds, b"\x08" + varint(seconds) if seconds else b"")
    stamp = _last_second[1] + (b"\x10" + varint(nanos) if nanos else b"")
    seq = e.seq
    payload = e.payload
    return b"".join(
        (
            b"\x08" + varint(seq) if seq else b"",
            ids,
            b"\x22",
            _SMALL[len(stamp)],  # at most 2 + 10 + 1 + 10 bytes
            stamp,
            _PAYLOAD[payload.__class__](payload),
        )
    )


def batch_bytes(encoded: Iterable[bytes]) -> bytes:
    """An ``EventBatch`` of already encoded events (``repeated Event events = 1``)."""
    parts: list[bytes] = []
    for b in encoded:
        parts.append(b"\x0a" + varint(len(b)))
        parts.append(b)
    return b"".join(parts)


# --- registration ---


def _passthrough(serializer: Callable[[Any], bytes] | None) -> Callable[[Any], bytes]:
    def serialize(message: Any) -> bytes:
        if message.__class__ is bytes:
            return message
        if serializer is None:  # pragma: no cover - the generated handlers always have one
            raise TypeError("no serializer for a non-bytes message")
        return serializer(message)

    return serialize


def _rewrite(handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    if handler.unary_stream is None:
        return handler
    return grpc.unary_stream_rpc_method_handler(
        handler.unary_stream,
        request_deserializer=handler.request_deserializer,
        response_serializer=_passthrough(handler.response_serializer),
    )


class _EncodedGeneric(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, inner: grpc.GenericRpcHandler, methods: frozenset[str]) -> None:
        self._inner = inner
        self._methods = methods
        self._cache: dict[str, grpc.RpcMethodHandler | None] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method = details.method
        if method not in self._methods:
            return self._inner.service(details)
        try:
            return self._cache[method]
        except KeyError:
            handler = self._inner.service(details)
            self._cache[method] = rewritten = None if handler is None else _rewrite(handler)
            return rewritten


class EncodedResponses:
    """What ``add_*_to_server`` registers into: the handlers of ``methods`` (full names,
    ``/package.Service/Method``) accept ``bytes`` responses (see the module docstring)."""

    def __init__(self, target: Any, methods: Sequence[str]) -> None:
        self._target = target
        self._methods = frozenset(methods)

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._target.add_generic_rpc_handlers(
            tuple(_EncodedGeneric(h, self._methods) for h in handlers)
        )

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        self._target.add_registered_method_handlers(
            service,
            {
                name: _rewrite(h) if f"/{service}/{name}" in self._methods else h
                for name, h in handlers.items()
            },
        )


def send_encoded(target: Any, methods: Sequence[str]) -> EncodedResponses:
    return EncodedResponses(target, methods)
