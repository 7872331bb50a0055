"""The one table from Runtime errors to gRPC status codes, walked by class hierarchy (most specific
class first via the MRO). Every error carries a google.rpc.Status with an ErrorInfo
(reason, domain ``worker-runtime``, metadata) in the ``grpc-status-details-bin`` trailer."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from runtime_server import errors

DOMAIN = "worker-runtime"

STATUS: dict[type[errors.RuntimeError_], grpc.StatusCode] = {
    errors.RuntimeError_: grpc.StatusCode.INTERNAL,
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.RuntimeDraining: grpc.StatusCode.UNAVAILABLE,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.StoreFailure: grpc.StatusCode.INTERNAL,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
}


def status_code(exc: errors.RuntimeError_) -> grpc.StatusCode:
    for cls in type(exc).__mro__:
        code = STATUS.get(cls)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def status_details(
    code: grpc.StatusCode, message: str, reason: str, metadata: dict[str, str]
) -> tuple[tuple[str, bytes]]:
    info = error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN, metadata=metadata)
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(
        code=getattr(code_pb2, code.name, code_pb2.UNKNOWN), message=message, details=[detail]
    )
    return (("grpc-status-details-bin", status.SerializeToString()),)


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


async def abort(
    context: grpc.aio.ServicerContext[object, object], exc: errors.RuntimeError_
) -> None:
    """Abort the call with ``exc``'s status and ErrorInfo: the one place errors leave the server,
    so the one place echoed values are cut (ids are bounded before lookup as well)."""
    code = status_code(exc)
    message = clip(exc.message, MESSAGE_CHARS)
    metadata = {clip(k, ECHO_CHARS): clip(v, ECHO_CHARS) for k, v in exc.metadata.items()}
    await context.abort(
        code, message, trailing_metadata=status_details(code, message, exc.reason, metadata)
    )
