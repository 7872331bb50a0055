"""Request fields the Runtime validates itself (the gRPC edge checks only wire shapes).

**Text must be valid Unicode.** A Python ``str`` can hold a surrogate code point (U+D800-U+DFFF:
``json.loads('"\\ud800"')`` makes one), which UTF-8 cannot encode. The remote path cannot carry
it at all (protobuf refuses to encode it), so an embedded caller's request with one used to be
accepted and kept as-is: a display name that then broke every JSON answer listing the worker, an
input text that made the SQLite writer fail (STORE_FAILURE for the whole Runtime, every active
run INTERRUPTED). :func:`check_unicode` refuses it with INVALID_ARGUMENT naming the field,
checked first in each entry point, field by field in the request message's field order; the
client (``runtime_client._text``) runs the same rule before it encodes a request, so both paths
give the same error for the same call.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Iterator, Mapping

from runtime_server import errors
from runtime_server.model import Limits, Workspace

_SURROGATE = re.compile("[\ud800-\udfff]")


def not_unicode(text: str) -> str:
    """What is wrong with ``text`` ("" when it is valid Unicode). The same words as the client's
    ``runtime_client._text``: the two paths raise equal errors."""
    if text.isascii():
        return ""
    found = _SURROGATE.search(text)
    if found is None:
        return ""
    return (
        f"is not valid Unicode: U+{ord(found.group()):04X} at character {found.start()} is a "
        "surrogate code point, which UTF-8 cannot encode"
    )


def _strings(field_: str, value: object) -> Iterator[tuple[str, str]]:
    """Every string in a request value with its field path: ``labels`` for a map's keys,
    ``labels[k]`` for its values, ``capabilities[i]``, ``workspace.mounts[i].path``."""
    if isinstance(value, str):
        yield field_, value
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _strings(field_, key)
            yield from _strings(f"{field_}[{key}]", item)
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            yield from _strings(f"{field_}[{i}]", item)
    elif dataclasses.is_dataclass(value) and not isinstance(value, (type, enum.Enum)):
        for f in dataclasses.fields(value):
            yield from _strings(f"{field_}.{f.name}", getattr(value, f.name))


def check_unicode(**fields: object) -> None:
    """INVALID_ARGUMENT for the first string (in keyword order: the request message's field
    order) that is not valid Unicode."""
    for name, value in fields.items():
        if value is None or (isinstance(value, str) and value.isascii()):
            continue  # the common case, at the cost of one C call
        for path, text in _strings(name, value):
            problem = not_unicode(text)
            if problem:
                raise errors.InvalidArgument(path, problem)


def check_len(field_: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise errors.InvalidArgument(field_, f"is longer than {limit} characters", limit=str(limit))


def check_request_id(request_id: str, lim: Limits) -> None:
    check_len("request_id", request_id, lim.max_request_id_chars)
    if request_id and not request_id.isprintable():
        raise errors.InvalidArgument("request_id", "must be printable")


def check_labels(labels: Mapping[str, str], lim: Limits) -> None:
    if len(labels) > lim.max_labels:
        raise errors.InvalidArgument("labels", f"more than {lim.max_labels} labels")
    for key, value in labels.items():
        if not key or len(key) > lim.max_label_chars or not key.isprintable():
            raise errors.InvalidArgument("labels", f"bad label key {key[:40]!r}")
        if len(value) > lim.max_label_chars or not value.isprintable():
            raise errors.InvalidArgument(f"labels[{key}]", "bad label value")


def check_workspace(workspace: Workspace | None) -> None:
    if workspace is None:
        return
    if not workspace.root.startswith("/"):
        raise errors.InvalidArgument("workspace.root", "must be an absolute path")
    for i, mount in enumerate(workspace.mounts):
        if not mount.path.startswith("/"):
            raise errors.InvalidArgument(f"workspace.mounts[{i}].path", "must be an absolute path")
