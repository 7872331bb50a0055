"""Errors raised by the client: one tree, mirroring the server's (``runtime_server.errors``) class
names and ErrorInfo reasons, plus three transport-level classes for failures that carry no
ErrorInfo. Every class has ``message``, ``reason`` (the ErrorInfo reason), ``code`` (the gRPC
status as a :class:`StatusCode` string enum, so callers never import grpc) and ``metadata``
(ErrorInfo metadata, strings). Structured attributes are read from the metadata.

::

    RuntimeClientError                base; any status not listed below keeps its own code
    ├── InvalidArgument               INVALID_ARGUMENT    (.field)
    │   ├── MalformedRequest          MALFORMED_REQUEST   (the body did not decode)
    │   ├── ConfigBundleInvalid       CONFIG_BUNDLE_INVALID (.field, .line)
    │   └── DigestMismatch            DIGEST_MISMATCH     (.computed_digest)
    ├── NotFound                      NOT_FOUND
    │   ├── WorkerNotFound            WORKER_NOT_FOUND
    │   ├── RunNotFound               RUN_NOT_FOUND
    │   └── ProfileNotFound           PROFILE_NOT_FOUND
    ├── AlreadyExists                 ALREADY_EXISTS
    │   ├── WorkerAlreadyExists       WORKER_ALREADY_EXISTS
    │   └── IdempotencyConflict       IDEMPOTENCY_KEY_REUSED
    ├── FailedPrecondition            FAILED_PRECONDITION
    │   ├── WorkerBusy                WORKER_BUSY         (.active_run_id)
    │   ├── WorkerStopped             WORKER_STOPPED
    │   ├── RuntimeDraining           RUNTIME_DRAINING    (status UNAVAILABLE; .last_seq)
    │   ├── WorkspaceConflict         WORKSPACE_CONFLICT  (.holder_worker_id, .held_path)
    │   ├── ConfigBundleNotFound      CONFIG_BUNDLE_NOT_FOUND (.bundle_id, .digest)
    │   ├── ConfigBundleInUse         CONFIG_BUNDLE_IN_USE (.worker_count)
    │   └── ProviderNotAvailable      PROVIDER_NOT_AVAILABLE (.provider)
    ├── ResourceExhausted             RESOURCE_EXHAUSTED
    │   ├── QueueFull                 QUEUE_FULL
    │   ├── TooManyWorkers            TOO_MANY_WORKERS
    │   ├── SubscriberLagging         SUBSCRIBER_LAGGING  (.last_seq)
    │   └── MemoryBudgetExceeded      MEMORY_BUDGET_EXCEEDED (.limit, .held, .needed)
    ├── OutOfRange                    OUT_OF_RANGE
    │   ├── CursorExpired             CURSOR_EXPIRED      (.oldest_seq)
    │   └── CursorAhead               CURSOR_AHEAD        (.last_seq)
    ├── Unauthenticated               UNAUTHENTICATED
    ├── StoreFailure                  STORE_FAILURE       (status INTERNAL)
    ├── PermissionDenied              PERMISSION_DENIED   host policy refuses the request
    │   ├── WorkspaceNotAllowed       WORKSPACE_NOT_ALLOWED (.field)
    │   └── CapabilityNotAllowed      CAPABILITY_NOT_ALLOWED (.capability)
    ├── Unavailable                   UNAVAILABLE         transport: server down, connection cut
    ├── DeadlineExceeded              DEADLINE_EXCEEDED   transport: the call's timeout passed
    └── InternalError                 INTERNAL            UNKNOWN / INTERNAL / DATA_LOSS /
                                                          UNIMPLEMENTED without a known reason

:func:`from_rpc_error` is the one seam where grpc errors become these: by the ErrorInfo reason
(domain ``worker-runtime``) in the ``grpc-status-details-bin`` trailer when there is one, else by
status code. The client always raises the result ``from`` the grpc error.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "ERROR_DOMAIN",
    "AlreadyExists",
    "CursorAhead",
    "CapabilityNotAllowed",
    "ConfigBundleInUse",
    "ConfigBundleInvalid",
    "ConfigBundleNotFound",
    "CursorExpired",
    "DeadlineExceeded",
    "DigestMismatch",
    "FailedPrecondition",
    "IdempotencyConflict",
    "InternalError",
    "InvalidArgument",
    "MalformedRequest",
    "MemoryBudgetExceeded",
    "NotFound",
    "OutOfRange",
    "PermissionDenied",
    "ProfileNotFound",
    "ProviderNotAvailable",
    "QueueFull",
    "ResourceExhausted",
    "RunNotFound",
    "RuntimeClientError",
    "RuntimeDraining",
    "StatusCode",
    "StoreFailure",
    "SubscriberLagging",
    "TooManyWorkers",
    "Unauthenticated",
    "Unavailable",
    "WorkerAlreadyExists",
    "WorkerBusy",
    "WorkerNotFound",
    "WorkerStopped",
    "WorkspaceConflict",
    "WorkspaceNotAllowed",
    "from_rpc_error",
    "from_status",
]

ERROR_DOMAIN = "worker-runtime"
_DETAILS_KEY = "grpc-status-details-bin"


class StatusCode(enum.StrEnum):
    """gRPC status codes by name (``grpc.StatusCode`` without importing grpc)."""

    OK = "OK"
    CANCELLED = "CANCELLED"
    UNKNOWN = "UNKNOWN"
    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    RESOURCE_EXHAUSTED = "RESOURCE_EXHAUSTED"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    ABORTED = "ABORTED"
    OUT_OF_RANGE = "OUT_OF_RANGE"
    UNIMPLEMENTED = "UNIMPLEMENTED"
    INTERNAL = "INTERNAL"
    UNAVAILABLE = "UNAVAILABLE"
    DATA_LOSS = "DATA_LOSS"
    UNAUTHENTICATED = "UNAUTHENTICATED"


class RuntimeClientError(Exception):
    """Base of every error the client raises.

    The class attributes ``reason`` and ``code`` are each class's defaults; an instance built from
    a server error carries what the server actually sent (a reason newer than this client keeps
    its string and falls back to the class of its status code).
    """

    reason: str = "RUNTIME_ERROR"
    code: StatusCode = StatusCode.UNKNOWN

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        code: StatusCode | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            self.reason = reason
        if code is not None:
            self.code = code
        self.metadata: Mapping[str, str] = dict(metadata or {})

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, reason={self.reason!r}, code={self.code!s})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only state would be lost by Exception's default pickling (args only)
        return (_rebuild, (type(self), self.message, self.reason, self.code, dict(self.metadata)))

    def _int(self, key: str) -> int:
        try:
            return int(self.metadata.get(key, "0"))
        except ValueError:
            return 0


def _rebuild(
    cls: type[RuntimeClientError],
    message: str,
    reason: str,
    code: StatusCode,
    metadata: dict[str, str],
) -> RuntimeClientError:
    return cls(message, reason=reason, code=code, metadata=metadata)


class InvalidArgument(RuntimeClientError):
    reason = "INVALID_ARGUMENT"
    code = StatusCode.INVALID_ARGUMENT

    @property
    def field(self) -> str:
        """The request field that was rejected."""
        return self.metadata.get("field", "")


class MalformedRequest(InvalidArgument):
    """The server could not decode the request body as the method's message (a client built
    from other protos, a corrupted or hand-made body)."""

    reason = "MALFORMED_REQUEST"


class ConfigBundleInvalid(InvalidArgument):
    """A config bundle's content was refused: ``field`` is the key path in the bundle (or
    ``content``), ``line`` its line in the bundle (0 when there is none)."""

    reason = "CONFIG_BUNDLE_INVALID"

    @property
    def line(self) -> int:
        return self._int("line")


class DigestMismatch(InvalidArgument):
    """``expected_digest`` differs from the digest of the bytes sent (``computed_digest``)."""

    reason = "DIGEST_MISMATCH"

    @property
    def computed_digest(self) -> str:
        return self.metadata.get("computed_digest", "")


class NotFound(RuntimeClientError):
    reason = "NOT_FOUND"
    code = StatusCode.NOT_FOUND


class WorkerNotFound(NotFound):
    reason = "WORKER_NOT_FOUND"


class RunNotFound(NotFound):
    reason = "RUN_NOT_FOUND"


class ProfileNotFound(NotFound):
    reason = "PROFILE_NOT_FOUND"


class AlreadyExists(RuntimeClientError):
    reason = "ALREADY_EXISTS"
    code = StatusCode.ALREADY_EXISTS


class WorkerAlreadyExists(AlreadyExists):
    reason = "WORKER_ALREADY_EXISTS"


class IdempotencyConflict(AlreadyExists):
    """The same ``request_id`` was already used for a different request."""

    reason = "IDEMPOTENCY_KEY_REUSED"


class FailedPrecondition(RuntimeClientError):
    reason = "FAILED_PRECONDITION"
    code = StatusCode.FAILED_PRECONDITION


class WorkerBusy(FailedPrecondition):
    reason = "WORKER_BUSY"

    @property
    def active_run_id(self) -> str:
        return self.metadata.get("active_run_id", "")


class WorkerStopped(FailedPrecondition):
    reason = "WORKER_STOPPED"


class RuntimeDraining(FailedPrecondition):
    """The Runtime is shutting down and takes no new work (sent with status UNAVAILABLE). An event
    stream ends with it at shutdown, after delivering every committed event (the runs'
    ``RunFinished(INTERRUPTED)`` included); ``last_seq`` is where to resume."""

    reason = "RUNTIME_DRAINING"
    code = StatusCode.UNAVAILABLE

    @property
    def last_seq(self) -> int:
        """The seq to resume after (0 when the error is not a stream's end)."""
        return self._int("last_seq")


class WorkspaceConflict(FailedPrecondition):
    """Another live worker holds read-write on an overlapping real path."""

    reason = "WORKSPACE_CONFLICT"

    @property
    def holder_worker_id(self) -> str:
        return self.metadata.get("holder_worker_id", "")

    @property
    def held_path(self) -> str:
        return self.metadata.get("held_path", "")


class ConfigBundleNotFound(FailedPrecondition):
    """No config bundle with this id and digest is stored on the runtime (push it, then retry)."""

    reason = "CONFIG_BUNDLE_NOT_FOUND"

    @property
    def bundle_id(self) -> str:
        return self.metadata.get("bundle_id", "")

    @property
    def digest(self) -> str:
        return self.metadata.get("digest", "")


class ConfigBundleInUse(FailedPrecondition):
    """Workers still reference the config bundle (the message names the first few)."""

    reason = "CONFIG_BUNDLE_IN_USE"

    @property
    def worker_count(self) -> int:
        return self._int("worker_count")


class ProviderNotAvailable(FailedPrecondition):
    """The bundle's profile names a provider this runtime's host config does not define."""

    reason = "PROVIDER_NOT_AVAILABLE"

    @property
    def provider(self) -> str:
        return self.metadata.get("provider", "")


class ResourceExhausted(RuntimeClientError):
    reason = "RESOURCE_EXHAUSTED"
    code = StatusCode.RESOURCE_EXHAUSTED


class QueueFull(ResourceExhausted):
    reason = "QUEUE_FULL"


class TooManyWorkers(ResourceExhausted):
    reason = "TOO_MANY_WORKERS"


class SubscriberLagging(ResourceExhausted):
    """A subscription fell too far behind and was cut; resume after ``last_seq``."""

    reason = "SUBSCRIBER_LAGGING"

    @property
    def last_seq(self) -> int:
        return self._int("last_seq")


class MemoryBudgetExceeded(ResourceExhausted):
    """The runtime's estimated memory is at its ``max_memory_bytes``: ``held`` bytes, and the
    request needed ``needed`` more."""

    reason = "MEMORY_BUDGET_EXCEEDED"

    @property
    def limit(self) -> int:
        return self._int("limit")

    @property
    def held(self) -> int:
        return self._int("held")

    @property
    def needed(self) -> int:
        return self._int("needed")


class OutOfRange(RuntimeClientError):
    reason = "OUT_OF_RANGE"
    code = StatusCode.OUT_OF_RANGE


class CursorExpired(OutOfRange):
    """The cursor is older than retention; ``oldest_seq`` is the oldest event still available."""

    reason = "CURSOR_EXPIRED"

    @property
    def oldest_seq(self) -> int:
        return self._int("oldest_seq")


class CursorAhead(OutOfRange):
    """The cursor is ahead of the log (e.g. a Runtime restarted with a memory store)."""

    reason = "CURSOR_AHEAD"

    @property
    def last_seq(self) -> int:
        return self._int("last_seq")


class Unauthenticated(RuntimeClientError):
    reason = "UNAUTHENTICATED"
    code = StatusCode.UNAUTHENTICATED


class StoreFailure(RuntimeClientError):
    """The Runtime's storage failed: never the caller's fault."""

    reason = "STORE_FAILURE"
    code = StatusCode.INTERNAL


class PermissionDenied(RuntimeClientError):
    """The Runtime's host policy refuses the request."""

    reason = "PERMISSION_DENIED"
    code = StatusCode.PERMISSION_DENIED


class WorkspaceNotAllowed(PermissionDenied):
    """A workspace root or mount lies outside the host's allowed roots (or overlaps the
    Runtime's own data); ``field`` names it."""

    reason = "WORKSPACE_NOT_ALLOWED"

    @property
    def field(self) -> str:
        return self.metadata.get("field", "")


class CapabilityNotAllowed(PermissionDenied):
    reason = "CAPABILITY_NOT_ALLOWED"

    @property
    def capability(self) -> str:
        return self.metadata.get("capability", "")


class Unavailable(RuntimeClientError):
    """The Runtime could not be reached or the connection was cut."""

    reason = "UNAVAILABLE"
    code = StatusCode.UNAVAILABLE


class DeadlineExceeded(RuntimeClientError):
    reason = "DEADLINE_EXCEEDED"
    code = StatusCode.DEADLINE_EXCEEDED


class InternalError(RuntimeClientError):
    """A server or protocol failure without a reason this client knows."""

    reason = "INTERNAL"
    code = StatusCode.INTERNAL


def _subclasses(cls: type[RuntimeClientError]) -> Iterable[type[RuntimeClientError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


_BY_REASON: dict[str, type[RuntimeClientError]] = {
    c.reason: c for c in _subclasses(RuntimeClientError)
}

# Used when a status carries no ErrorInfo of our domain, or a reason this client does not know.
_BY_CODE: dict[StatusCode, type[RuntimeClientError]] = {
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
    StatusCode.UNIMPLEMENTED: InternalError,
}


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


def from_rpc_error(exc: Any) -> RuntimeClientError:
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
    return from_status(code, message, reason, metadata)


def from_status(
    code: StatusCode, message: str, reason: str | None, metadata: Mapping[str, str]
) -> RuntimeClientError:
    """The client error for a status: the class of ``reason`` when this client knows it, else the
    class of ``code``. :func:`from_rpc_error` uses it for a remote Runtime; the embedded handle
    (``runtime_server.embedded``) for an in-process one, so both raise the same error."""
    cls = _BY_REASON.get(reason) if reason else None
    if cls is None:
        cls = _BY_CODE.get(code, RuntimeClientError)
    if not reason:
        # the base class has no reason of its own: the status code is the most precise name
        reason = code.value if cls is RuntimeClientError else cls.reason
    return cls(message or code.value, reason=reason, code=code, metadata=metadata)
