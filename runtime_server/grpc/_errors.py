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


async def abort(
    context: grpc.aio.ServicerContext[object, object], exc: errors.RuntimeError_
) -> None:
    code = status_code(exc)
    await context.abort(
        code,
        exc.message,
        trailing_metadata=status_details(code, exc.message, exc.reason, dict(exc.metadata)),
    )
