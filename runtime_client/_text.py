"""Request text must be valid Unicode: the client's half of the rule the Runtime applies
(``runtime_server.runtime._validation.check_unicode``).

A Python ``str`` can hold a surrogate code point (U+D800-U+DFFF, e.g. from ``json.loads`` of a
``"\\ud800"`` escape) that UTF-8 cannot encode, so protobuf cannot put it in a request. Before,
that surfaced as a bare ``UnicodeEncodeError`` from deep inside the call, while an embedded
Runtime answered the same call with INVALID_ARGUMENT. Now each call checks its request's strings
first, field by field in the request message's field order, and raises the
:class:`~runtime_client.errors.InvalidArgument` the Runtime would: same field path (``labels``
for a map's keys, ``labels[k]`` for its values, ``workspace.mounts[i].path``), same message, cut
as the Runtime cuts an error it sends.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from runtime_client.errors import StatusCode, from_status

M = TypeVar("M")

_SURROGATE = re.compile("[\ud800-\udfff]")
_MESSAGE_CHARS, _ECHO_CHARS = 256, 128  # what a Runtime's error echoes (runtime_server.wire_errors)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _not_unicode(text: str) -> str:
    if text.isascii():
        return ""
    found = _SURROGATE.search(text)
    if found is None:
        return ""
    return (
        f"is not valid Unicode: U+{ord(found.group()):04X} at character {found.start()} is a "
        "surrogate code point, which UTF-8 cannot encode"
    )


def _strings(field: str, value: object) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield field, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(field, key)
            yield from _strings(f"{field}[{key}]", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(f"{field}[{i}]", item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, (type, enum.Enum)):
        for f in dataclasses.fields(value):
            yield from _strings(f"{field}.{f.name}", getattr(value, f.name))


def check_unicode(**fields: object) -> None:
    """Raise the Runtime's INVALID_ARGUMENT for the first string (keyword order = the request
    message's field order) that is not valid Unicode."""
    for name, value in fields.items():
        if value is None or (isinstance(value, str) and value.isascii()):
            continue
        for path, text in _strings(name, value):
            problem = _not_unicode(text)
            if problem:
                raise from_status(
                    StatusCode.INVALID_ARGUMENT,
                    _clip(f"{path}: {problem}", _MESSAGE_CHARS),
                    "INVALID_ARGUMENT",
                    {"field": _clip(path, _ECHO_CHARS)},
                )


def request(message: Callable[..., M], **fields: Any) -> M:
    """``message(**fields)`` (a request message), after :func:`check_unicode` of its fields
    (given in the message's field order)."""
    check_unicode(**fields)
    return message(**fields)


_BEARER = re.compile(r"[\x21-\x7e]+")


def bearer_metadata(token: str | None) -> tuple[tuple[str, str], ...] | None:
    """The call metadata carrying ``token`` (None without one). Surrounding whitespace is
    stripped (a token file, or a Kubernetes Secret made from one, often ends with a newline) as
    ``serve`` strips it; anything else but visible ASCII is a ValueError naming ``token``, never
    showing it: gRPC metadata cannot carry it (grpc failed every call with an internal error)."""
    token = (token or "").strip()
    if not token:
        return None
    if _BEARER.fullmatch(token) is None:
        raise ValueError(
            "token: a bearer token is visible ASCII characters only, no spaces or control "
            "characters (the token is not shown)"
        )
    return (("authorization", f"Bearer {token}"),)
