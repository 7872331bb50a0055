"""Errors raised by a RuntimeHandle — the client over gRPC and the embedded handle alike: one tree,
mirroring the server's (``runtime_server.errors``) class names and ErrorInfo reasons, plus the
transport-level classes for failures that carry no ErrorInfo. Every class has ``message``,
``reason`` (the ErrorInfo reason), ``code`` (the gRPC status as a :class:`StatusCode` string enum,
so callers never import grpc) and ``metadata`` (ErrorInfo metadata, strings). Every leaf also has
typed attributes, named as its metadata keys (the parenthesised names below): built by hand,
its metadata is derived from them; received, they are read from the metadata it came with.

::

    RuntimeServiceError               base; any status not listed below keeps its own code
    ├── InvalidArgument               INVALID_ARGUMENT    (field)
    │   ├── MalformedRequest          MALFORMED_REQUEST   (field, method) the body did not decode
    │   ├── ConfigBundleInvalid       CONFIG_BUNDLE_INVALID (field, line)
    │   └── DigestMismatch            DIGEST_MISMATCH     (field, expected_digest, computed_digest)
    ├── NotFound                      NOT_FOUND
    │   ├── WorkerNotFound            WORKER_NOT_FOUND    (worker_id)
    │   ├── RunNotFound               RUN_NOT_FOUND       (run_id)
    │   ├── ProfileNotFound           PROFILE_NOT_FOUND   (profile, bundle)
    │   └── RuntimeNotFound           RUNTIME_NOT_FOUND   (runtime_id) registry: no such runtime
    ├── AlreadyExists                 ALREADY_EXISTS
    │   ├── WorkerAlreadyExists       WORKER_ALREADY_EXISTS (worker_id)
    │   └── IdempotencyConflict       IDEMPOTENCY_KEY_REUSED (request_id)
    ├── FailedPrecondition            FAILED_PRECONDITION
    │   ├── WorkerBusy                WORKER_BUSY         (worker_id, active_run_id)
    │   ├── WorkerStopped             WORKER_STOPPED      (worker_id)
    │   ├── WorkspaceConflict         WORKSPACE_CONFLICT  (field, path, holder_worker_id, held_path)
    │   ├── ConfigBundleNotFound      CONFIG_BUNDLE_NOT_FOUND (bundle_id, digest)
    │   ├── ConfigBundleInUse         CONFIG_BUNDLE_IN_USE (bundle_id, digest, worker_ids,
    │   │                                                 worker_count)
    │   ├── ProviderNotAvailable      PROVIDER_NOT_AVAILABLE (provider, profile)
    │   └── RuntimeIdentityChanged    RUNTIME_IDENTITY_CHANGED (runtime_id, expected, actual)
    ├── ResourceExhausted             RESOURCE_EXHAUSTED
    │   ├── QueueFull                 QUEUE_FULL          (worker_id, limit)
    │   ├── TooManyWorkers            TOO_MANY_WORKERS    (limit)
    │   ├── SubscriberLagging         SUBSCRIBER_LAGGING  (last_seq, buffer)
    │   ├── TooManySubscribers        TOO_MANY_SUBSCRIBERS (limit)
    │   ├── MemoryBudgetExceeded      MEMORY_BUDGET_EXCEEDED (limit, held, needed)
    │   ├── TooManyConfigBundles      TOO_MANY_CONFIG_BUNDLES (limit)
    │   └── MessageTooLarge           MESSAGE_TOO_LARGE   (size, limit) transport: a message past
    │                                                     the receiver's limit (client-side)
    ├── OutOfRange                    OUT_OF_RANGE
    │   ├── CursorExpired             CURSOR_EXPIRED      (after_seq, oldest_seq)
    │   └── CursorAhead               CURSOR_AHEAD        (after_seq, last_seq)
    ├── Unauthenticated               UNAUTHENTICATED
    ├── StoreFailure                  STORE_FAILURE       (status INTERNAL)
    ├── PermissionDenied              PERMISSION_DENIED   host policy refuses the request
    │   ├── WorkspaceNotAllowed       WORKSPACE_NOT_ALLOWED (field)
    │   └── CapabilityNotAllowed      CAPABILITY_NOT_ALLOWED (capability)
    ├── Unavailable                   UNAVAILABLE         retryable: server down, connection cut
    │   ├── RuntimeDraining           RUNTIME_DRAINING    (last_seq) shutting down, back later
    │   ├── RuntimeUnavailable        RUNTIME_UNAVAILABLE (runtime_id, state) registry: unusable
    │   └── NoRuntimeAvailable        NO_RUNTIME_AVAILABLE (profile) registry: nowhere to place
    ├── DeadlineExceeded              DEADLINE_EXCEEDED   transport: the call's timeout passed
    ├── InternalError                 INTERNAL            UNKNOWN / INTERNAL / DATA_LOSS without
    │                                                     a known reason
    └── Unimplemented                 UNIMPLEMENTED       transport: the server lacks the method
                                                          (an older Runtime)

The four registry classes are raised by ``RuntimeRegistry`` in the caller's own process (no
Runtime sends them, so the server has no counterpart); their reasons are unique and known to
:func:`from_rpc_error`, so a service that forwards them as gRPC statuses is decoded to the same
classes.

``RuntimeDraining`` travels as UNAVAILABLE and is an :class:`Unavailable`: ``except Unavailable``
is "try again later", and ``except FailedPrecondition`` never catches it.

:func:`from_rpc_error` is the one seam where grpc errors become these: by the ErrorInfo reason
(domain :data:`ERROR_DOMAIN`) in the ``grpc-status-details-bin`` trailer when there is one, else by
status code; :func:`from_status` does the same from the parts (the embedded handle uses it). The
client always raises the result ``from`` the grpc error.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

from runtime_client._bundle_errors import (
    ConfigBundleInUse,
    ConfigBundleInvalid,
    ConfigBundleNotFound,
    DigestMismatch,
    ProviderNotAvailable,
    TooManyConfigBundles,
)
from runtime_client._error_tree import (
    ERROR_DOMAIN,
    AlreadyExists,
    CapabilityNotAllowed,
    CursorAhead,
    CursorExpired,
    DeadlineExceeded,
    FailedPrecondition,
    IdempotencyConflict,
    InternalError,
    InvalidArgument,
    MalformedRequest,
    MemoryBudgetExceeded,
    MessageTooLarge,
    NotFound,
    OutOfRange,
    PermissionDenied,
    ProfileNotFound,
    QueueFull,
    ResourceExhausted,
    RunNotFound,
    RuntimeDraining,
    RuntimeServiceError,
    StatusCode,
    StoreFailure,
    SubscriberLagging,
    TooManySubscribers,
    TooManyWorkers,
    Unauthenticated,
    Unavailable,
    Unimplemented,
    Wire,
    WorkerAlreadyExists,
    WorkerBusy,
    WorkerNotFound,
    WorkerStopped,
    WorkspaceConflict,
    WorkspaceNotAllowed,
)
from runtime_client._registry_errors import (
    NoRuntimeAvailable,
    RuntimeIdentityChanged,
    RuntimeNotFound,
    RuntimeUnavailable,
)

__all__ = [
    "ERROR_DOMAIN",
    "AlreadyExists",
    "CapabilityNotAllowed",
    "ConfigBundleInUse",
    "ConfigBundleInvalid",
    "ConfigBundleNotFound",
    "CursorAhead",
    "CursorExpired",
    "DeadlineExceeded",
    "DigestMismatch",
    "FailedPrecondition",
    "IdempotencyConflict",
    "InternalError",
    "InvalidArgument",
    "MalformedRequest",
    "MemoryBudgetExceeded",
    "MessageTooLarge",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ProfileNotFound",
    "ProviderNotAvailable",
    "QueueFull",
    "ResourceExhausted",
    "RunNotFound",
    "RuntimeDraining",
    "RuntimeIdentityChanged",
    "RuntimeNotFound",
    "RuntimeUnavailable",
    "NoRuntimeAvailable",
    "RuntimeServiceError",
    "StatusCode",
    "StoreFailure",
    "SubscriberLagging",
    "TooManyConfigBundles",
    "TooManySubscribers",
    "TooManyWorkers",
    "Unauthenticated",
    "Unavailable",
    "Unimplemented",
    "WorkerAlreadyExists",
    "WorkerBusy",
    "WorkerNotFound",
    "WorkerStopped",
    "WorkspaceConflict",
    "WorkspaceNotAllowed",
    "from_rpc_error",
    "from_status",
]

_DETAILS_KEY = "grpc-status-details-bin"


# --- from the wire ----------------------------------------------------------------------------


def _subclasses(cls: type[RuntimeServiceError]) -> Iterable[type[RuntimeServiceError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


_BY_REASON: dict[str, type[RuntimeServiceError]] = {
    c.reason: c for c in _subclasses(RuntimeServiceError)
}

# Used when a status carries no ErrorInfo of our domain, or a reason this client does not know.
_BY_CODE: dict[StatusCode, type[RuntimeServiceError]] = {
    StatusCode.INVALID_ARGUMENT: InvalidArgument,
    StatusCode.NOT_FOUND: NotFound,
    StatusCode.ALREADY_EXISTS: AlreadyExists,
    StatusCode.FAILED_PRECONDITION: FailedPrecondition,
    StatusCode.RESOURCE_EXHAUSTED: ResourceExhausted,
    StatusCode.OUT_OF_RANGE: OutOfRange,
    StatusCode.UNAUTHENTICATED: Unauthenticated,
    StatusCode.PERMISSION_DENIED: PermissionDenied,
    StatusCode.UNAVAILABLE: Unavailable,
    StatusCode.DEADLINE_EXCEEDED: DeadlineExceeded,
    StatusCode.UNKNOWN: InternalError,
    StatusCode.INTERNAL: InternalError,
    StatusCode.DATA_LOSS: InternalError,
    StatusCode.UNIMPLEMENTED: Unimplemented,
}

_WIRE_PARAMETERS = {"self", "message", *Wire.__annotations__}


def _typed_parameters(cls: type[RuntimeServiceError]) -> dict[str, bool]:
    """{typed attribute: whether it is an int} for ``cls``'s constructor."""
    params = inspect.signature(cls.__init__).parameters.values()
    return {
        p.name: p.annotation in ("int", int)
        for p in params
        if p.name not in _WIRE_PARAMETERS and p.kind is p.KEYWORD_ONLY
    }


_ALL: list[type[RuntimeServiceError]] = [RuntimeServiceError, *_subclasses(RuntimeServiceError)]
for _cls in (*_ALL, StatusCode):
    # named where they are imported from (tracebacks, reprs, pickles): runtime_client.errors.X
    if _cls.__module__ in ("runtime_client._error_tree", "runtime_client._bundle_errors"):
        _cls.__module__ = __name__
_TYPED: dict[type[RuntimeServiceError], dict[str, bool]] = {c: _typed_parameters(c) for c in _ALL}


def _int(text: str | None) -> int:
    try:
        return int(text or "0")
    except ValueError:
        return 0


def _build(
    cls: type[RuntimeServiceError],
    code: StatusCode,
    message: str,
    reason: str,
    metadata: Mapping[str, str],
) -> RuntimeServiceError:
    typed: dict[str, Any] = {
        name: _int(metadata.get(name)) if is_int else metadata.get(name, "")
        for name, is_int in _TYPED[cls].items()
    }
    return cls(message, reason=reason, code=code, metadata=metadata, **typed)


def from_status(
    code: StatusCode, message: str, reason: str | None, metadata: Mapping[str, str]
) -> RuntimeServiceError:
    """The error for a status: the class of ``reason`` when this client knows it, else the class
    of ``code``, its typed attributes read from ``metadata``. :func:`from_rpc_error` uses it for a
    remote Runtime; the embedded handle (``runtime_server.embedded``) for an in-process one, so
    both raise the same error."""
    cls = _BY_REASON.get(reason) if reason else None
    if cls is None:
        cls = _BY_CODE.get(code, RuntimeServiceError)
    if not reason:
        # the base class has no reason of its own: the status code is the most precise name
        reason = code.value if cls is RuntimeServiceError else cls.reason
    return _build(cls, code, message or code.value, reason, metadata)


def _status_details(trailing: Iterable[tuple[str, str | bytes]] | None) -> status_pb2.Status | None:
    for key, value in trailing or ():
        if key == _DETAILS_KEY and isinstance(value, bytes):
            status = status_pb2.Status()
            try:
                status.ParseFromString(value)
            except DecodeError:
                return None
            return status
    return None


def from_rpc_error(exc: Any) -> RuntimeServiceError:
    """Map a grpc error (``grpc.aio.AioRpcError`` or a sync ``grpc.RpcError`` call) to the client
    error class: by ErrorInfo reason first, then by status code. Callers ``raise ... from exc``."""
    code_obj = exc.code()
    try:
        code = StatusCode(getattr(code_obj, "name", str(code_obj)))
    except ValueError:
        code = StatusCode.UNKNOWN
    message: str = exc.details() or ""
    reason: str | None = None
    metadata: Mapping[str, str] = {}
    status = _status_details(exc.trailing_metadata())
    if status is not None:
        message = status.message or message
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                if info.domain == ERROR_DOMAIN:
                    reason = info.reason
                    metadata = dict(info.metadata)
                    break
    if code is StatusCode.UNAVAILABLE and status is None and _UNTRUSTED_MARK in message:
        message = f"{_UNTRUSTED} (grpc: {message})"  # say first what grpc's words mean
    if code is StatusCode.RESOURCE_EXHAUSTED and status is None:
        too_large = _TOO_LARGE.search(message)
        if too_large is not None:  # grpc's own limit, on either side: a typed error
            size, limit = too_large[1], too_large[2]
            message = (
                f"a message of {size} bytes is larger than the limit of {limit} bytes (an "
                "answer: the client's max_receive_message_bytes; a request: the runtime's "
                "max_message_bytes)"
            )
            reason, metadata = MessageTooLarge.reason, {"size": size, "limit": limit}
    return from_status(code, message, reason, metadata)


# grpc's words when a message passes the receiver's max_receive_message_length (either side)
_TOO_LARGE = re.compile(r"Received message larger than max \((\d+) vs\. (\d+)\)")

# A TLS handshake that failed because the server's certificate does not chain to a CA the
# client trusts: grpc reports it as UNAVAILABLE "failed to connect to all addresses; last error:
# ... Tls handshake failed ... CERTIFICATE_VERIFY_FAILED: unable to get local issuer certificate".
_UNTRUSTED_MARK = "CERTIFICATE_VERIFY_FAILED"
_UNTRUSTED = (
    "the server's TLS certificate is not trusted: it is not signed by a CA in ca_file, or in "
    "the system's trust roots when no ca_file is given"
)
