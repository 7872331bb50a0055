"""What leaves the Runtime for a :class:`~runtime_server.errors.RuntimeServiceError`: its gRPC
status code (by name: grpc is not imported here, so the embedded handle uses the same table
without the network), its message and ErrorInfo metadata with echoed values cut. The gRPC edge
sends it; the embedded handle raises the client's class built from it, so both callers see the
same error.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from runtime_server.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ResourceExhausted,
    RuntimeServiceError,
    StoreFailure,
    Unauthenticated,
    Unavailable,
)

__all__ = [
    "ECHO_CHARS",
    "MESSAGE_CHARS",
    "STATUS_CODES",
    "WireError",
    "clip",
    "status_name",
    "wire_form",
]

# The status code of each family, by the name of the gRPC code (grpc is not imported here: the
# embedded handle needs the same table without the network). Walked by class hierarchy, most
# specific class first, so a subclass takes its family's code unless listed itself.
STATUS_CODES: dict[type[RuntimeServiceError], str] = {
    RuntimeServiceError: "INTERNAL",
    InvalidArgument: "INVALID_ARGUMENT",
    NotFound: "NOT_FOUND",
    AlreadyExists: "ALREADY_EXISTS",
    FailedPrecondition: "FAILED_PRECONDITION",
    ResourceExhausted: "RESOURCE_EXHAUSTED",
    OutOfRange: "OUT_OF_RANGE",
    Unauthenticated: "UNAUTHENTICATED",
    StoreFailure: "INTERNAL",
    PermissionDenied: "PERMISSION_DENIED",
    Unavailable: "UNAVAILABLE",
}

# What an error may echo: its message and each ErrorInfo metadata value are cut to these many
# characters (with an ellipsis). Both travel in trailers (the message twice: grpc-message,
# percent-encoded, and inside grpc-status-details-bin, base64), and a client drops trailers past
# its metadata limit (8 KiB by default) as RESOURCE_EXHAUSTED — losing the real error. Even in
# 4-byte characters these bounds keep an error's trailers well under that limit.
MESSAGE_CHARS = 256
ECHO_CHARS = 128


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the last one an ellipsis when anything was cut."""
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def status_name(exc: RuntimeServiceError) -> str:
    """The name of the gRPC status code ``exc`` travels as (``"UNAVAILABLE"``)."""
    for cls in type(exc).__mro__:
        code = STATUS_CODES.get(cls)
        if code is not None:
            return code
    return "INTERNAL"


@dataclass(frozen=True, slots=True)
class WireError:
    """What leaves the Runtime for ``exc``: status code name, message, ErrorInfo reason and
    metadata, with echoed values cut (the gRPC edge sends it; the embedded handle raises the
    client's class built from it, so both callers see the same error)."""

    code: str
    message: str
    reason: str
    metadata: Mapping[str, str]


def wire_form(exc: RuntimeServiceError) -> WireError:
    return WireError(
        code=status_name(exc),
        message=clip(exc.message, MESSAGE_CHARS),
        reason=exc.reason,
        metadata={clip(k, ECHO_CHARS): clip(v, ECHO_CHARS) for k, v in exc.metadata.items()},
    )
