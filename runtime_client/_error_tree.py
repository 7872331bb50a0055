"""The error classes of :mod:`runtime_client.errors` (which draws the tree and maps statuses to
them); kept apart so that module stays readable. Import them from ``runtime_client.errors``.

Adding a class: put it at the end of its family here, add it to the tree drawn in
``runtime_client.errors`` and to its ``__all__``, and give it its reason and typed keyword
arguments named as its metadata keys, set through :meth:`RuntimeServiceError._typed`::

    class QueueFull(ResourceExhausted):
        reason = "QUEUE_FULL"
        worker_id: str
        limit: int

        def __init__(
            self, message: str = "", *, worker_id: str = "", limit: int = 0, **wire: Unpack[Wire]
        ) -> None:
            self._typed(message or f"...", wire, worker_id=worker_id, limit=limit)

``from_status`` reads ``str`` and ``int`` arguments back from a received error's metadata by
those names. A class raised by the server needs the server class of the same name and reason
(``runtime_server.errors``); tests/api/test_errors.py walks them through a real server.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, TypedDict, Unpack

# The ErrorInfo domain of every Runtime error: the one definition (the server's gRPC edge
# imports it from runtime_client.errors).
ERROR_DOMAIN = "worker-runtime"


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


class Wire(TypedDict, total=False):
    """What a received error carries besides its typed attributes (every constructor takes it)."""

    reason: str | None
    code: StatusCode | None
    metadata: Mapping[str, str] | None


class RuntimeServiceError(Exception):
    """Base of every error a RuntimeHandle raises.

    The class attributes ``reason`` and ``code`` are each class's defaults; an instance built from
    a server error carries what the server actually sent (a reason newer than this client keeps
    its string and falls back to the class of its status code). ``metadata``: given (a received
    error), it is kept as sent; else it is derived from the leaf's typed attributes.
    """

    reason: str = "RUNTIME_ERROR"
    code: StatusCode = StatusCode.UNKNOWN

    def __init__(
        self,
        message: str = "",
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

    def _typed(self, message: str, wire: Wire, **typed: str | int) -> None:
        """A leaf's constructor: set its typed attributes, derive the metadata from them unless
        the error came with its own."""
        for name, value in typed.items():
            setattr(self, name, value)
        metadata = wire.get("metadata")
        if metadata is None:  # built here: derived ("" strings say nothing and are left out)
            metadata = {name: str(value) for name, value in typed.items() if value != ""}
        RuntimeServiceError.__init__(
            self, message, reason=wire.get("reason"), code=wire.get("code"), metadata=metadata
        )

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, reason={self.reason!r}, code={self.code!s})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        # keyword-only state would be lost by Exception's default pickling (args only)
        from runtime_client.errors import _build

        return (_build, (type(self), self.code, self.message, self.reason, dict(self.metadata)))


# --- ordered as the tree above; within a family, new classes go at the end -------------------


class InvalidArgument(RuntimeServiceError):
    reason = "INVALID_ARGUMENT"
    code = StatusCode.INVALID_ARGUMENT
    field: str

    def __init__(self, message: str = "", *, field: str = "", **wire: Unpack[Wire]) -> None:
        """The request field ``field`` was rejected."""
        self._typed(message or f"{field}: invalid", wire, field=field)


class MalformedRequest(InvalidArgument):
    """The server could not decode the request body as the method's message (a client built
    from other protos, a corrupted or hand-made body)."""

    reason = "MALFORMED_REQUEST"
    method: str

    def __init__(
        self, message: str = "", *, field: str = "request", method: str = "", **wire: Unpack[Wire]
    ) -> None:
        self._typed(message or f"undecodable body for {method}", wire, field=field, method=method)


class NotFound(RuntimeServiceError):
    reason = "NOT_FOUND"
    code = StatusCode.NOT_FOUND


class WorkerNotFound(NotFound):
    reason = "WORKER_NOT_FOUND"
    worker_id: str

    def __init__(self, message: str = "", *, worker_id: str = "", **wire: Unpack[Wire]) -> None:
        self._typed(message or f"worker {worker_id!r} not found", wire, worker_id=worker_id)


class RunNotFound(NotFound):
    reason = "RUN_NOT_FOUND"
    run_id: str

    def __init__(self, message: str = "", *, run_id: str = "", **wire: Unpack[Wire]) -> None:
        self._typed(message or f"run {run_id!r} not found", wire, run_id=run_id)


class ProfileNotFound(NotFound):
    """No profile ``profile`` (in config bundle ``bundle``, ``id@digest``, when one was named)."""

    reason = "PROFILE_NOT_FOUND"
    profile: str
    bundle: str

    def __init__(
        self, message: str = "", *, profile: str = "", bundle: str = "", **wire: Unpack[Wire]
    ) -> None:
        text = message or f"profile {profile!r} not found" + (f" in {bundle!r}" if bundle else "")
        self._typed(text, wire, profile=profile, bundle=bundle)


class AlreadyExists(RuntimeServiceError):
    reason = "ALREADY_EXISTS"
    code = StatusCode.ALREADY_EXISTS


class WorkerAlreadyExists(AlreadyExists):
    reason = "WORKER_ALREADY_EXISTS"
    worker_id: str

    def __init__(self, message: str = "", *, worker_id: str = "", **wire: Unpack[Wire]) -> None:
        self._typed(message or f"worker {worker_id!r} already exists", wire, worker_id=worker_id)


class IdempotencyConflict(AlreadyExists):
    """The same ``request_id`` was already used for a different request."""

    reason = "IDEMPOTENCY_KEY_REUSED"
    request_id: str

    def __init__(self, message: str = "", *, request_id: str = "", **wire: Unpack[Wire]) -> None:
        text = message or f"request_id {request_id!r} was already used for a different request"
        self._typed(text, wire, request_id=request_id)


class FailedPrecondition(RuntimeServiceError):
    reason = "FAILED_PRECONDITION"
    code = StatusCode.FAILED_PRECONDITION


class WorkerBusy(FailedPrecondition):
    reason = "WORKER_BUSY"
    worker_id: str
    active_run_id: str

    def __init__(
        self,
        message: str = "",
        *,
        worker_id: str = "",
        active_run_id: str = "",
        **wire: Unpack[Wire],
    ) -> None:
        text = message or f"worker {worker_id!r} is busy with run {active_run_id!r}"
        self._typed(text, wire, worker_id=worker_id, active_run_id=active_run_id)


class WorkerStopped(FailedPrecondition):
    reason = "WORKER_STOPPED"
    worker_id: str

    def __init__(self, message: str = "", *, worker_id: str = "", **wire: Unpack[Wire]) -> None:
        self._typed(message or f"worker {worker_id!r} is stopped", wire, worker_id=worker_id)


class WorkspaceConflict(FailedPrecondition):
    """Another live worker (``holder_worker_id``) holds read-write on ``held_path``, which
    overlaps the request's ``path`` (request field ``field``)."""

    reason = "WORKSPACE_CONFLICT"
    field: str
    path: str
    holder_worker_id: str
    held_path: str

    def __init__(
        self,
        message: str = "",
        *,
        field: str = "",
        path: str = "",
        holder_worker_id: str = "",
        held_path: str = "",
        **wire: Unpack[Wire],
    ) -> None:
        text = message or f"{field}: {path!r} overlaps {held_path!r}, held by {holder_worker_id!r}"
        self._typed(
            text, wire, field=field, path=path, holder_worker_id=holder_worker_id,
            held_path=held_path,
        )  # fmt: skip


class ResourceExhausted(RuntimeServiceError):
    reason = "RESOURCE_EXHAUSTED"
    code = StatusCode.RESOURCE_EXHAUSTED


class QueueFull(ResourceExhausted):
    reason = "QUEUE_FULL"
    worker_id: str
    limit: int

    def __init__(
        self, message: str = "", *, worker_id: str = "", limit: int = 0, **wire: Unpack[Wire]
    ) -> None:
        text = message or f"worker {worker_id!r} input queue is full ({limit})"
        self._typed(text, wire, worker_id=worker_id, limit=limit)


class TooManyWorkers(ResourceExhausted):
    reason = "TOO_MANY_WORKERS"
    limit: int

    def __init__(self, message: str = "", *, limit: int = 0, **wire: Unpack[Wire]) -> None:
        text = message or f"the runtime holds its maximum of {limit} workers"
        self._typed(text, wire, limit=limit)


class SubscriberLagging(ResourceExhausted):
    """A subscription fell ``buffer`` events behind and was cut; resume after ``last_seq``."""

    reason = "SUBSCRIBER_LAGGING"
    last_seq: int
    buffer: int

    def __init__(
        self, message: str = "", *, last_seq: int = 0, buffer: int = 0, **wire: Unpack[Wire]
    ) -> None:
        text = message or f"subscriber fell {buffer} events behind; resume after {last_seq}"
        self._typed(text, wire, last_seq=last_seq, buffer=buffer)


class TooManySubscribers(ResourceExhausted):
    reason = "TOO_MANY_SUBSCRIBERS"
    limit: int

    def __init__(self, message: str = "", *, limit: int = 0, **wire: Unpack[Wire]) -> None:
        text = message or f"the runtime has its maximum of {limit} open event subscriptions"
        self._typed(text, wire, limit=limit)


class MemoryBudgetExceeded(ResourceExhausted):
    """The runtime's estimated memory is at its ``max_memory_bytes`` (``limit``): ``held`` bytes,
    and the request needed ``needed`` more."""

    reason = "MEMORY_BUDGET_EXCEEDED"
    limit: int
    held: int
    needed: int

    def __init__(
        self,
        message: str = "",
        *,
        limit: int = 0,
        held: int = 0,
        needed: int = 0,
        **wire: Unpack[Wire],
    ) -> None:
        text = message or f"memory budget full: {held} of {limit} bytes held, {needed} needed"
        self._typed(text, wire, limit=limit, held=held, needed=needed)


class MessageTooLarge(ResourceExhausted):
    """A gRPC message of ``size`` bytes was larger than the receiver's ``limit``: for an answer,
    the client's ``max_receive_message_bytes`` (the message was refused as its length arrived,
    never held); for a request, the runtime's ``max_message_bytes``. Raised in the caller's
    process from grpc's own RESOURCE_EXHAUSTED (no runtime sends this reason)."""

    reason = "MESSAGE_TOO_LARGE"
    size: int
    limit: int

    def __init__(
        self, message: str = "", *, size: int = 0, limit: int = 0, **wire: Unpack[Wire]
    ) -> None:
        text = message or f"a message of {size} bytes is larger than the limit of {limit} bytes"
        self._typed(text, wire, size=size, limit=limit)


class OutOfRange(RuntimeServiceError):
    reason = "OUT_OF_RANGE"
    code = StatusCode.OUT_OF_RANGE


class CursorExpired(OutOfRange):
    """The cursor ``after_seq`` is older than retention; ``oldest_seq`` is the oldest event still
    available."""

    reason = "CURSOR_EXPIRED"
    after_seq: int
    oldest_seq: int

    def __init__(
        self, message: str = "", *, after_seq: int = 0, oldest_seq: int = 0, **wire: Unpack[Wire]
    ) -> None:
        text = message or f"after_seq {after_seq} is older than retention (oldest {oldest_seq})"
        self._typed(text, wire, after_seq=after_seq, oldest_seq=oldest_seq)


class CursorAhead(OutOfRange):
    """The cursor is ahead of the log (e.g. a Runtime restarted with a memory store)."""

    reason = "CURSOR_AHEAD"
    after_seq: int
    last_seq: int

    def __init__(
        self, message: str = "", *, after_seq: int = 0, last_seq: int = 0, **wire: Unpack[Wire]
    ) -> None:
        text = message or f"after_seq {after_seq} is ahead of the log (last seq {last_seq})"
        self._typed(text, wire, after_seq=after_seq, last_seq=last_seq)


class Unauthenticated(RuntimeServiceError):
    reason = "UNAUTHENTICATED"
    code = StatusCode.UNAUTHENTICATED


class StoreFailure(RuntimeServiceError):
    """The Runtime's storage failed: never the caller's fault. ``path``: the store file it is
    about; ``state``: the store's state (FAILING, DAMAGED) when a change was refused ("" when
    not said)."""

    reason = "STORE_FAILURE"
    code = StatusCode.INTERNAL
    path: str
    state: str

    def __init__(
        self, message: str = "", *, path: str = "", state: str = "", **wire: Unpack[Wire]
    ) -> None:
        self._typed(message or "the runtime's store failed", wire, path=path, state=state)


class PermissionDenied(RuntimeServiceError):
    """The Runtime's host policy refuses the request."""

    reason = "PERMISSION_DENIED"
    code = StatusCode.PERMISSION_DENIED


class WorkspaceNotAllowed(PermissionDenied):
    """A workspace root or mount lies outside the host's allowed roots (or overlaps the
    Runtime's own data); ``field`` names it."""

    reason = "WORKSPACE_NOT_ALLOWED"
    field: str

    def __init__(self, message: str = "", *, field: str = "", **wire: Unpack[Wire]) -> None:
        self._typed(message or f"{field}: not allowed by the host", wire, field=field)


class CapabilityNotAllowed(PermissionDenied):
    reason = "CAPABILITY_NOT_ALLOWED"
    capability: str

    def __init__(self, message: str = "", *, capability: str = "", **wire: Unpack[Wire]) -> None:
        text = message or f"capability {capability!r} is not allowed by this runtime's host policy"
        self._typed(text, wire, capability=capability)


class Unavailable(RuntimeServiceError):
    """The Runtime could not be reached, the connection was cut, or it is shutting down: worth
    retrying later (the client's RetryPolicy and ``subscribe`` do)."""

    reason = "UNAVAILABLE"
    code = StatusCode.UNAVAILABLE


class RuntimeDraining(Unavailable):
    """The Runtime is shutting down and takes no new work. An event stream ends with it at
    shutdown, after delivering every committed event (the runs' ``RunFinished(INTERRUPTED)``
    included); ``last_seq`` is where to resume (0 when the error is not a stream's end)."""

    reason = "RUNTIME_DRAINING"
    last_seq: int

    def __init__(self, message: str = "", *, last_seq: int = 0, **wire: Unpack[Wire]) -> None:
        text = message or "the runtime is shutting down and takes no new work"
        self._typed(text, wire, last_seq=last_seq)


class DeadlineExceeded(RuntimeServiceError):
    reason = "DEADLINE_EXCEEDED"
    code = StatusCode.DEADLINE_EXCEEDED


class InternalError(RuntimeServiceError):
    """A server or protocol failure without a reason this client knows."""

    reason = "INTERNAL"
    code = StatusCode.INTERNAL


class Unimplemented(RuntimeServiceError):
    """The server does not have this method: an older Runtime than this client (compare
    GetRuntime's ``version`` and ``capabilities.features``), or another gRPC service at that
    address. The caller's request was not run; retrying will not help. grpc itself answers it
    (no Runtime raises it, so the server has no counterpart, like DeadlineExceeded)."""

    reason = "UNIMPLEMENTED"
    code = StatusCode.UNIMPLEMENTED
