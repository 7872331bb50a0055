"""Which string field of a protobuf body is not UTF-8: run only after decoding failed.

protobuf refuses a whole message when one of its ``string`` fields holds bytes that are not UTF-8
(proto3 requires it), and says only "Error parsing message". A client in another language (or a
hand-written body) can send such bytes; the answer should name the field, as every other
INVALID_ARGUMENT does. This walks the wire format against the message's descriptor and returns
the first string field whose bytes do not decode, as a path (``labels[team]``,
``workspace.mounts[1].path``), or None when the body is broken in another way (then the caller
names the whole ``request``).

It runs on the error path only — the hot path (SendInput, SubscribeEvents) decodes as before —
and is bounded by the body's size, which grpc already bounded (``max_message_bytes``): every
byte is visited at most once per nesting level, and nesting is cut at ``MAX_DEPTH``.
"""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import FieldDescriptor

__all__ = ["invalid_utf8_field"]

MAX_DEPTH = 32


class _Broken(Exception):
    """The bytes are not well-formed protobuf: no field to name."""


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise _Broken
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def invalid_utf8_field(descriptor: Any, data: bytes) -> str | None:
    """The path of the first string field in ``data`` (a ``descriptor`` message) that is not
    UTF-8, or None."""
    try:
        return _walk(descriptor, data, "", 0)
    except _Broken:
        return None


def _walk(descriptor: Any, data: bytes, prefix: str, depth: int) -> str | None:
    if depth > MAX_DEPTH:
        return None
    seen: dict[int, int] = {}  # field number -> elements of a repeated field so far
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire_type = key >> 3, key & 7
        if wire_type == 0:
            _, pos = _varint(data, pos)
            continue
        if wire_type in (1, 5):
            pos += 8 if wire_type == 1 else 4
            continue
        if wire_type != 2:
            raise _Broken  # groups (3, 4) and unknown types: not in our messages
        size, pos = _varint(data, pos)
        chunk, pos = data[pos : pos + size], pos + size
        if pos > end:
            raise _Broken
        field = descriptor.fields_by_number.get(number)
        if field is None:
            continue  # an unknown field: kept by protobuf, never decoded as text
        name = prefix + field.name
        if field.is_repeated:
            index = seen.get(number, 0)
            seen[number] = index + 1
        else:
            index = -1
        if field.type == FieldDescriptor.TYPE_STRING:
            try:
                chunk.decode("utf-8")
            except UnicodeDecodeError:
                return f"{name}[{index}]" if index >= 0 else name
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:  # labels[key]: the key, when it is text, names it
                found = _walk(sub, chunk, "", depth + 1)
                if found is not None:
                    return name if found == "key" else f"{name}[{_map_key(sub, chunk)}]"
                continue
            where = f"{name}[{index}]." if index >= 0 else f"{name}."
            found = _walk(sub, chunk, where, depth + 1)
            if found is not None:
                return found
    return None


def _map_key(entry: Any, data: bytes) -> str:
    """A map entry's key as text (cut to 64 characters), or ``?``."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        if key >> 3 == 1 and key & 7 == 2:
            size, pos = _varint(data, pos)
            text = data[pos : pos + size].decode("utf-8", "replace")
            return text[:64] if text.isprintable() else "?"
        if key & 7 == 0:
            _, pos = _varint(data, pos)
        elif key & 7 == 2:
            size, pos = _varint(data, pos)
            pos += size
        else:
            return "?"
    return "?"
