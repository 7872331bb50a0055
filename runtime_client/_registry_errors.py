"""The error classes :class:`~runtime_client.RuntimeRegistry` raises itself, in the caller's
process (no runtime sends them), of :mod:`runtime_client.errors` (which draws the tree and maps
reasons to them); kept apart so ``_error_tree`` stays readable. Import them from
``runtime_client.errors``."""

from __future__ import annotations

from typing import Unpack

from runtime_client._error_tree import FailedPrecondition, NotFound, Unavailable, Wire

__all__ = [
    "NoRuntimeAvailable",
    "RuntimeIdentityChanged",
    "RuntimeNotFound",
    "RuntimeUnavailable",
]


class RuntimeNotFound(NotFound):
    """The registry holds no runtime with this ``runtime_id`` (raised by RuntimeRegistry itself,
    in the caller's process)."""

    reason = "RUNTIME_NOT_FOUND"
    runtime_id: str

    def __init__(self, message: str = "", *, runtime_id: str = "", **wire: Unpack[Wire]) -> None:
        text = message or f"no runtime {runtime_id!r} is registered"
        self._typed(text, wire, runtime_id=runtime_id)


class RuntimeIdentityChanged(FailedPrecondition):
    """The runtime at a registered address now answers with another ``runtime_id`` (``actual``)
    than the one the registry pinned (``expected``): its data dir was wiped, or the address points
    at another replica. Old worker ids and cursors mean nothing there, so every call to it fails
    with this (raised by RuntimeRegistry)."""

    reason = "RUNTIME_IDENTITY_CHANGED"
    runtime_id: str
    expected: str
    actual: str

    def __init__(
        self,
        message: str = "",
        *,
        runtime_id: str = "",
        expected: str = "",
        actual: str = "",
        **wire: Unpack[Wire],
    ) -> None:
        text = message or f"runtime {expected!r} now answers as {actual!r}"
        self._typed(text, wire, runtime_id=runtime_id, expected=expected, actual=actual)


class RuntimeUnavailable(Unavailable):
    """The registry's runtime cannot be used now (``state``: UNREACHABLE, AUTH_FAILED, still
    CONNECTING): the call failed at once, without waiting on the network (raised by
    RuntimeRegistry)."""

    reason = "RUNTIME_UNAVAILABLE"
    runtime_id: str
    state: str

    def __init__(
        self, message: str = "", *, runtime_id: str = "", state: str = "", **wire: Unpack[Wire]
    ) -> None:
        text = message or f"runtime {runtime_id!r} is {state or 'unavailable'}"
        self._typed(text, wire, runtime_id=runtime_id, state=state)


class NoRuntimeAvailable(Unavailable):
    """Placement found no READY runtime offering ``profile`` (raised by RuntimeRegistry)."""

    reason = "NO_RUNTIME_AVAILABLE"
    profile: str

    def __init__(self, message: str = "", *, profile: str = "", **wire: Unpack[Wire]) -> None:
        text = message or f"no READY runtime offers profile {profile!r}"
        self._typed(text, wire, profile=profile)
