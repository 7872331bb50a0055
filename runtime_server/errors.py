"""Errors of the Runtime core. The gRPC edge maps each class to a status code and ErrorInfo reason
(runtime_server.grpc._errors); the client maps reasons back to the same classes.

::

    RuntimeError_                     base; ``reason`` is the ErrorInfo reason
    ├── InvalidArgument               INVALID_ARGUMENT  (names the field)
    │   ├── MalformedRequest          MALFORMED_REQUEST (the body is not this method's message)
    │   ├── ConfigBundleInvalid       CONFIG_BUNDLE_INVALID (names the field and line)
    │   └── DigestMismatch            DIGEST_MISMATCH (carries the computed digest)
    ├── NotFound                      NOT_FOUND
    │   ├── WorkerNotFound            WORKER_NOT_FOUND
    │   ├── RunNotFound               RUN_NOT_FOUND
    │   └── ProfileNotFound           PROFILE_NOT_FOUND
    ├── AlreadyExists                 ALREADY_EXISTS
    │   ├── WorkerAlreadyExists       WORKER_ALREADY_EXISTS
    │   └── IdempotencyConflict       IDEMPOTENCY_KEY_REUSED (same request_id, different request)
    ├── FailedPrecondition            FAILED_PRECONDITION
    │   ├── WorkerBusy                WORKER_BUSY (carries active_run_id)
    │   ├── WorkerStopped             WORKER_STOPPED
    │   ├── RuntimeDraining           RUNTIME_DRAINING   (UNAVAILABLE; a stream's last_seq)
    │   ├── WorkspaceConflict         WORKSPACE_CONFLICT (carries holder worker_id and path)
    │   ├── ConfigBundleNotFound      CONFIG_BUNDLE_NOT_FOUND (carries bundle_id, digest)
    │   ├── ConfigBundleInUse         CONFIG_BUNDLE_IN_USE (names the referencing workers)
    │   └── ProviderNotAvailable      PROVIDER_NOT_AVAILABLE (a bundle's provider this host lacks)
    ├── ResourceExhausted             RESOURCE_EXHAUSTED
    │   ├── QueueFull                 QUEUE_FULL
    │   ├── TooManyWorkers            TOO_MANY_WORKERS
    │   ├── SubscriberLagging         SUBSCRIBER_LAGGING (carries last_seq)
    │   └── MemoryBudgetExceeded      MEMORY_BUDGET_EXCEEDED (carries limit, held, needed)
    ├── OutOfRange                    OUT_OF_RANGE
    │   ├── CursorExpired             CURSOR_EXPIRED (carries oldest_seq)
    │   └── CursorAhead               CURSOR_AHEAD (carries last_seq)
    ├── Unauthenticated               UNAUTHENTICATED
    ├── StoreFailure                  STORE_FAILURE (INTERNAL: never the caller's fault)
    └── PermissionDenied              PERMISSION_DENIED (host policy refuses the request)
        ├── WorkspaceNotAllowed       WORKSPACE_NOT_ALLOWED (names the field and path)
        └── CapabilityNotAllowed      CAPABILITY_NOT_ALLOWED (names the capability)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


class RuntimeError_(Exception):
    """Base of Runtime errors: a stable ``reason`` plus string ``metadata`` for ErrorInfo."""

    reason = "RUNTIME_ERROR"

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: Mapping[str, str] = metadata


class InvalidArgument(RuntimeError_):
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, **metadata: str) -> None:
        super().__init__(f"{field}: {message}", field=field, **metadata)
        self.field = field


class MalformedRequest(InvalidArgument):
    """The request body is not a valid protobuf message for the method (raised at the gRPC edge,
    after auth: runtime_server.grpc._decoding)."""

    reason = "MALFORMED_REQUEST"

    def __init__(self, method: str) -> None:
        super().__init__(
            "request",
            f"the body is not a valid protobuf message for {method}",
            method=method,
        )


class ConfigBundleInvalid(InvalidArgument):
    """A config bundle's content is refused: ``field`` is the key path in the bundle
    (``profiles.x.api_key``) or ``content``; ``line`` its line (0 when it has none)."""

    reason = "CONFIG_BUNDLE_INVALID"

    def __init__(self, field: str, message: str, line: int = 0) -> None:
        where = f" (line {line})" if line else ""
        InvalidArgument.__init__(self, field, f"{message}{where}", line=str(line))
        self.line = line


class DigestMismatch(InvalidArgument):
    reason = "DIGEST_MISMATCH"

    def __init__(self, expected: str, computed: str) -> None:
        super().__init__(
            "expected_digest",
            f"{expected!r} does not match the content's digest {computed!r}",
            expected_digest=expected,
            computed_digest=computed,
        )
        self.computed_digest = computed


class NotFound(RuntimeError_):
    reason = "NOT_FOUND"


class WorkerNotFound(NotFound):
    reason = "WORKER_NOT_FOUND"

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} not found", worker_id=worker_id)


class RunNotFound(NotFound):
    reason = "RUN_NOT_FOUND"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found", run_id=run_id)


class ProfileNotFound(NotFound):
    reason = "PROFILE_NOT_FOUND"

    def __init__(self, profile: str, bundle: str = "") -> None:
        if bundle:  # "id@digest": the profile is not in that config bundle
            super().__init__(
                f"profile {profile!r} not found in config bundle {bundle!r}",
                profile=profile,
                bundle=bundle,
            )
        else:
            super().__init__(f"profile {profile!r} not found", profile=profile)


class AlreadyExists(RuntimeError_):
    reason = "ALREADY_EXISTS"


class WorkerAlreadyExists(AlreadyExists):
    reason = "WORKER_ALREADY_EXISTS"

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} already exists", worker_id=worker_id)


class IdempotencyConflict(AlreadyExists):
    reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used for a different request",
            request_id=request_id,
        )


class FailedPrecondition(RuntimeError_):
    reason = "FAILED_PRECONDITION"


class WorkerBusy(FailedPrecondition):
    reason = "WORKER_BUSY"

    def __init__(self, worker_id: str, active_run_id: str) -> None:
        super().__init__(
            f"worker {worker_id!r} is busy with run {active_run_id!r}",
            worker_id=worker_id,
            active_run_id=active_run_id,
        )
        self.active_run_id = active_run_id


class WorkerStopped(FailedPrecondition):
    reason = "WORKER_STOPPED"

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} is stopped", worker_id=worker_id)


class RuntimeDraining(FailedPrecondition):
    """New work refused while shutting down; also how an event stream ends at shutdown, after it
    delivered everything committed: ``last_seq`` (ErrorInfo metadata) is the seq to resume after,
    later or elsewhere."""

    reason = "RUNTIME_DRAINING"

    def __init__(self, last_seq: int | None = None) -> None:
        if last_seq is None:
            super().__init__("the runtime is shutting down and takes no new work")
        else:
            super().__init__(
                f"the runtime is shutting down; resume with after_seq={last_seq} once it is back",
                last_seq=str(last_seq),
            )
        self.last_seq = last_seq


class WorkspaceConflict(FailedPrecondition):
    """Another live worker holds read-write on an overlapping real path."""

    reason = "WORKSPACE_CONFLICT"

    def __init__(self, field: str, path: str, holder: str, held_path: str) -> None:
        super().__init__(
            f"{field}: {path!r} overlaps {held_path!r}, held read-write by worker {holder!r}",
            field=field,
            path=path,
            holder_worker_id=holder,
            held_path=held_path,
        )
        self.holder_worker_id = holder


class ConfigBundleNotFound(FailedPrecondition):
    """No bundle with this id and digest is stored here (a Backend pushes it, then retries)."""

    reason = "CONFIG_BUNDLE_NOT_FOUND"

    def __init__(self, bundle_id: str, digest: str) -> None:
        super().__init__(
            f"config bundle {bundle_id!r} with digest {digest!r} is not stored on this runtime",
            bundle_id=bundle_id,
            digest=digest,
        )


class ConfigBundleInUse(FailedPrecondition):
    """Workers still reference the bundle (delete them first): the first few are named."""

    reason = "CONFIG_BUNDLE_IN_USE"

    def __init__(self, bundle_id: str, digest: str, worker_ids: tuple[str, ...]) -> None:
        shown = ", ".join(worker_ids[:5]) + (", ..." if len(worker_ids) > 5 else "")
        super().__init__(
            f"config bundle {bundle_id!r} ({digest}) is referenced by {len(worker_ids)} "
            f"worker(s): {shown}",
            bundle_id=bundle_id,
            digest=digest,
            worker_ids=",".join(worker_ids[:3]),
            worker_count=str(len(worker_ids)),
        )
        self.worker_ids = worker_ids


class ProviderNotAvailable(FailedPrecondition):
    """A bundle's profile names a provider this host's config does not define."""

    reason = "PROVIDER_NOT_AVAILABLE"

    def __init__(self, provider: str, profile: str) -> None:
        super().__init__(
            f"profile {profile!r} needs provider {provider!r}, which this runtime does not define",
            provider=provider,
            profile=profile,
        )


class ResourceExhausted(RuntimeError_):
    reason = "RESOURCE_EXHAUSTED"


class QueueFull(ResourceExhausted):
    reason = "QUEUE_FULL"

    def __init__(self, worker_id: str, limit: int) -> None:
        super().__init__(
            f"worker {worker_id!r} input queue is full ({limit})",
            worker_id=worker_id,
            limit=str(limit),
        )


class TooManyWorkers(ResourceExhausted):
    reason = "TOO_MANY_WORKERS"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the runtime holds its maximum of {limit} workers", limit=str(limit))


class SubscriberLagging(ResourceExhausted):
    reason = "SUBSCRIBER_LAGGING"

    def __init__(self, last_seq: int, buffer: int) -> None:
        super().__init__(
            f"subscriber fell {buffer} events behind; resume with after_seq={last_seq}",
            last_seq=str(last_seq),
            buffer=str(buffer),
        )
        self.last_seq = last_seq


class MemoryBudgetExceeded(ResourceExhausted):
    """Taking the request would take the Runtime's estimated memory past ``max_memory_bytes``."""

    reason = "MEMORY_BUDGET_EXCEEDED"

    def __init__(self, limit: int, held: int, needed: int) -> None:
        super().__init__(
            f"the runtime's memory budget is full: {held} of {limit} bytes are held and this "
            f"request needs {needed} more (finish or stop queued work, or delete workers)",
            limit=str(limit),
            held=str(held),
            needed=str(needed),
        )
        self.limit = limit
        self.held = held
        self.needed = needed


class OutOfRange(RuntimeError_):
    reason = "OUT_OF_RANGE"


class CursorExpired(OutOfRange):
    reason = "CURSOR_EXPIRED"

    def __init__(self, after_seq: int, oldest_seq: int) -> None:
        super().__init__(
            f"after_seq {after_seq} is older than retention; oldest available seq is {oldest_seq}",
            after_seq=str(after_seq),
            oldest_seq=str(oldest_seq),
        )
        self.oldest_seq = oldest_seq


class CursorAhead(OutOfRange):
    reason = "CURSOR_AHEAD"

    def __init__(self, after_seq: int, last_seq: int) -> None:
        super().__init__(
            f"after_seq {after_seq} is ahead of the log (last seq {last_seq})",
            after_seq=str(after_seq),
            last_seq=str(last_seq),
        )
        self.last_seq = last_seq


class Unauthenticated(RuntimeError_):
    reason = "UNAUTHENTICATED"


class StoreFailure(RuntimeError_):
    reason = "STORE_FAILURE"

    def again(self) -> StoreFailure:
        """A fresh copy for one more caller: raising one instance from many places would chain
        every caller's traceback onto it."""
        err = StoreFailure(self.message, **self.metadata)
        err.__cause__ = self.__cause__
        return err


class PermissionDenied(RuntimeError_):
    reason = "PERMISSION_DENIED"


class WorkspaceNotAllowed(PermissionDenied):
    reason = "WORKSPACE_NOT_ALLOWED"

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}", field=field)
        self.field = field


class CapabilityNotAllowed(PermissionDenied):
    reason = "CAPABILITY_NOT_ALLOWED"

    def __init__(self, capability: str) -> None:
        super().__init__(
            f"capability {capability!r} is not allowed by this runtime's host policy",
            capability=capability,
        )
        self.capability = capability


# --- the wire form ------------------------------------------------------------------------------

# The status code of each family, by the name of the gRPC code (grpc is not imported here: the
# embedded handle needs the same table without the network). Walked by class hierarchy, most
# specific class first, so a subclass takes its family's code unless listed itself.
STATUS_CODES: dict[type[RuntimeError_], str] = {
    RuntimeError_: "INTERNAL",
    InvalidArgument: "INVALID_ARGUMENT",
    NotFound: "NOT_FOUND",
    AlreadyExists: "ALREADY_EXISTS",
    FailedPrecondition: "FAILED_PRECONDITION",
    RuntimeDraining: "UNAVAILABLE",
    ResourceExhausted: "RESOURCE_EXHAUSTED",
    OutOfRange: "OUT_OF_RANGE",
    Unauthenticated: "UNAUTHENTICATED",
    StoreFailure: "INTERNAL",
    PermissionDenied: "PERMISSION_DENIED",
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


def status_name(exc: RuntimeError_) -> str:
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


def wire_form(exc: RuntimeError_) -> WireError:
    return WireError(
        code=status_name(exc),
        message=clip(exc.message, MESSAGE_CHARS),
        reason=exc.reason,
        metadata={clip(k, ECHO_CHARS): clip(v, ECHO_CHARS) for k, v in exc.metadata.items()},
    )
