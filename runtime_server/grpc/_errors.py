"""The one table from Runtime errors to gRPC status codes, walked by class hierarchy (most specific
class first via the MRO). Every error carries a google.rpc.Status with an ErrorInfo
(reason, domain ``worker-runtime``, metadata) in the ``grpc-status-details-bin`` trailer."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from runtime_client.errors import ERROR_DOMAIN as DOMAIN  # defined once, where clients read it
from runtime_server import errors, wire_errors

# The codes come from the one table in runtime_server.errors (grpc-free: the embedded handle uses
# it too), by name, so a code name that grpc does not know fails at import.
STATUS: dict[type[errors.RuntimeServiceError], grpc.StatusCode] = {
    cls: grpc.StatusCode[name] for cls, name in wire_errors.STATUS_CODES.items()
}


def status_code(exc: errors.RuntimeServiceError) -> grpc.StatusCode:
    return grpc.StatusCode[wire_errors.status_name(exc)]


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
    context: grpc.aio.ServicerContext[object, object], exc: errors.RuntimeServiceError
) -> None:
    """Abort the call with ``exc``'s status and ErrorInfo: the one place errors leave the server.
    Echoed values are cut by :func:`runtime_server.wire_errors.wire_form` (ids are bounded before
    lookup as well)."""
    wire = wire_errors.wire_form(exc)
    code = grpc.StatusCode[wire.code]
    await context.abort(
        code,
        wire.message,
        trailing_metadata=status_details(code, wire.message, wire.reason, dict(wire.metadata)),
    )
