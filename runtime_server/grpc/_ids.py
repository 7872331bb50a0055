"""The ids a request names, for the call's log context (:mod:`runtime_server.logcontext`): its
``worker_id``, ``run_id`` and ``request_id``, read by one reader per method built at start."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

# Ids from a request are logged only when they look like ids: a caller must not be able to write
# arbitrary text (newlines, escapes, megabytes) into the log through a field we echo.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")


def safe_id(value: object) -> str:
    if not value or not isinstance(value, str):
        return ""
    return value if _SAFE_ID.fullmatch(value) else ""


_NO_IDS = ("", "", "")


def id_reader(deserializer: Callable[[bytes], Any] | None) -> Callable[[Any], tuple[str, ...]]:
    """A method's reader of the request's ``worker_id``, ``run_id`` and ``request_id`` (""
    when absent or not id-like), built once: reading a field the message lacks raises and catches
    an AttributeError, the dearest part of a call's log context, so that is looked up here."""
    if deserializer is None:  # a deny handler's (auth): the body stays bytes
        return lambda request: _NO_IDS
    cls = getattr(deserializer, "__self__", None)  # a generated FromString is a classmethod
    descriptor = getattr(cls, "DESCRIPTOR", None)
    if descriptor is None:  # not a generated message: whatever the request has

        def any_ids(request: Any) -> tuple[str, ...]:
            return (
                safe_id(getattr(request, "worker_id", "")),
                safe_id(getattr(request, "run_id", "")),
                safe_id(getattr(request, "request_id", "")),
            )

        return any_ids
    names = descriptor.fields_by_name
    w, r, q = "worker_id" in names, "run_id" in names, "request_id" in names

    def ids(request: Any) -> tuple[str, ...]:
        if request.__class__ is not cls:  # Undecodable
            return _NO_IDS
        return (
            safe_id(request.worker_id) if w else "",
            safe_id(request.run_id) if r else "",
            safe_id(request.request_id) if q else "",
        )

    return ids
