"""Errors of the Runtime core. :data:`STATUS_CODES` maps each family to a gRPC status code (by
name: no grpc here) and each class carries its ErrorInfo reason; :func:`wire_form` is what leaves
the Runtime, through the gRPC edge (runtime_server.grpc._errors) or the embedded handle
(runtime_server.embedded). The client maps reasons back to the classes of the same names
(runtime_client.errors), whose typed attributes are these classes' metadata keys.

Every leaf takes typed constructor arguments, keeps them as attributes and derives its string
metadata from them (the parenthesised names below):

::

    RuntimeServiceError               base; ``reason`` is the ErrorInfo reason  INTERNAL
    ├── InvalidArgument               INVALID_ARGUMENT  (field)
    │   ├── MalformedRequest          MALFORMED_REQUEST (field, method) not this method's message
    │   ├── ConfigBundleInvalid       CONFIG_BUNDLE_INVALID (field, line) a bundle's key, its line
    │   └── DigestMismatch            DIGEST_MISMATCH (field, expected_digest, computed_digest)
    ├── NotFound                      NOT_FOUND
    │   ├── WorkerNotFound            WORKER_NOT_FOUND  (worker_id)
    │   ├── RunNotFound               RUN_NOT_FOUND     (run_id)
    │   └── ProfileNotFound           PROFILE_NOT_FOUND (profile, bundle when in a config bundle)
    ├── AlreadyExists                 ALREADY_EXISTS
    │   ├── WorkerAlreadyExists       WORKER_ALREADY_EXISTS  (worker_id)
    │   └── IdempotencyConflict       IDEMPOTENCY_KEY_REUSED (request_id) same id, other request
    ├── FailedPrecondition            FAILED_PRECONDITION
    │   ├── WorkerBusy                WORKER_BUSY        (worker_id, active_run_id)
    │   ├── WorkerStopped             WORKER_STOPPED     (worker_id)
    │   ├── WorkspaceConflict         WORKSPACE_CONFLICT (field, path, holder_worker_id, held_path)
    │   ├── ConfigBundleNotFound      CONFIG_BUNDLE_NOT_FOUND (bundle_id, digest)
    │   ├── ConfigBundleInUse         CONFIG_BUNDLE_IN_USE (bundle_id, digest, worker_ids,
    │   │                                                 worker_count)
    │   └── ProviderNotAvailable      PROVIDER_NOT_AVAILABLE (provider, profile)
    ├── ResourceExhausted             RESOURCE_EXHAUSTED
    │   ├── QueueFull                 QUEUE_FULL         (worker_id, limit)
    │   ├── TooManyWorkers            TOO_MANY_WORKERS   (limit)
    │   ├── SubscriberLagging         SUBSCRIBER_LAGGING (last_seq, buffer)
    │   ├── TooManySubscribers        TOO_MANY_SUBSCRIBERS (limit)
    │   ├── MemoryBudgetExceeded      MEMORY_BUDGET_EXCEEDED (limit, held, needed)
    │   └── TooManyConfigBundles      TOO_MANY_CONFIG_BUNDLES (limit) max_bundles are stored
    ├── OutOfRange                    OUT_OF_RANGE
    │   ├── CursorExpired             CURSOR_EXPIRED     (after_seq, oldest_seq)
    │   └── CursorAhead               CURSOR_AHEAD       (after_seq, last_seq)
    ├── Unauthenticated               UNAUTHENTICATED
    ├── StoreFailure                  STORE_FAILURE (INTERNAL: never the caller's fault)
    ├── PermissionDenied              PERMISSION_DENIED (host policy refuses the request)
    │   ├── WorkspaceNotAllowed       WORKSPACE_NOT_ALLOWED  (field)
    │   └── CapabilityNotAllowed      CAPABILITY_NOT_ALLOWED (capability)
    └── Unavailable                   UNAVAILABLE (retryable: try again later)
        └── RuntimeDraining           RUNTIME_DRAINING (last_seq, when it ends a stream)

``RuntimeDraining`` travels as UNAVAILABLE, so it is an :class:`Unavailable`, not a
:class:`FailedPrecondition`: ``except FailedPrecondition`` does not catch a retryable condition.
"""

from __future__ import annotations

from collections.abc import Mapping


class RuntimeServiceError(Exception):
    """Base of Runtime errors: a stable ``reason`` plus string ``metadata`` for ErrorInfo."""

    reason = "RUNTIME_ERROR"

    def __init__(self, message: str, **metadata: str) -> None:
        super().__init__(message)
        self.message = message
        self.metadata: Mapping[str, str] = metadata


class InvalidArgument(RuntimeServiceError):
    reason = "INVALID_ARGUMENT"

    def __init__(self, field: str, message: str, **metadata: str) -> None:
        super().__init__(f"{field}: {message}", field=field, **metadata)
        self.field = field


class MalformedRequest(InvalidArgument):
    """The request body is not a valid protobuf message for the method (raised at the gRPC edge,
    after auth: runtime_server.grpc._decoding)."""

    reason = "MALFORMED_REQUEST"

    def __init__(self, method: str, field: str = "") -> None:
        # field: the string field whose bytes are not UTF-8, when the body is otherwise sound
        # (named on the error path only: runtime_server.grpc._wire_utf8); else the whole request
        why = (
            f"is not valid UTF-8 (a protobuf string must be), in a request to {method}"
            if field
            else f"the body is not a valid protobuf message for {method}"
        )
        super().__init__(field or "request", why, method=method)
        self.method = method


class ConfigBundleInvalid(InvalidArgument):
    """A config bundle's content is refused: ``field`` is the key path in the bundle
    (``profiles.x.api_key``) or ``content``; ``line`` its line (0 when it has none)."""

    reason = "CONFIG_BUNDLE_INVALID"

    def __init__(self, field: str, why: str, line: int = 0) -> None:
        where = f" (line {line})" if line else ""
        InvalidArgument.__init__(self, field, f"{why}{where}", line=str(line))
        self.line = line


class DigestMismatch(InvalidArgument):
    reason = "DIGEST_MISMATCH"

    def __init__(self, expected_digest: str, computed_digest: str) -> None:
        super().__init__(
            "expected_digest",
            f"{expected_digest!r} does not match the content's digest {computed_digest!r}",
            expected_digest=expected_digest,
            computed_digest=computed_digest,
        )
        self.expected_digest = expected_digest
        self.computed_digest = computed_digest


class NotFound(RuntimeServiceError):
    reason = "NOT_FOUND"


class WorkerNotFound(NotFound):
    reason = "WORKER_NOT_FOUND"

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} not found", worker_id=worker_id)
        self.worker_id = worker_id


class RunNotFound(NotFound):
    reason = "RUN_NOT_FOUND"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id!r} not found", run_id=run_id)
        self.run_id = run_id


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
        self.profile = profile
        self.bundle = bundle


class AlreadyExists(RuntimeServiceError):
    reason = "ALREADY_EXISTS"


class WorkerAlreadyExists(AlreadyExists):
    reason = "WORKER_ALREADY_EXISTS"

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} already exists", worker_id=worker_id)
        self.worker_id = worker_id


class IdempotencyConflict(AlreadyExists):
    reason = "IDEMPOTENCY_KEY_REUSED"

    def __init__(self, request_id: str) -> None:
        super().__init__(
            f"request_id {request_id!r} was already used for a different request",
            request_id=request_id,
        )
        self.request_id = request_id


class FailedPrecondition(RuntimeServiceError):
    reason = "FAILED_PRECONDITION"


class WorkerBusy(FailedPrecondition):
    reason = "WORKER_BUSY"

    def __init__(self, worker_id: str, active_run_id: str) -> None:
        super().__init__(
            f"worker {worker_id!r} is busy with run {active_run_id!r}",
            worker_id=worker_id,
            active_run_id=active_run_id,
        )
        self.worker_id = worker_id
        self.active_run_id = active_run_id


class WorkerStopped(FailedPrecondition):
    reason = "WORKER_STOPPED"

    def __init__(self, worker_id: str) -> None:
        super().__init__(f"worker {worker_id!r} is stopped", worker_id=worker_id)
        self.worker_id = worker_id


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
        self.field = field
        self.path = path
        self.holder_worker_id = holder
        self.held_path = held_path


class ConfigBundleNotFound(FailedPrecondition):
    """No bundle with this id and digest is stored here (a Backend pushes it, then retries)."""

    reason = "CONFIG_BUNDLE_NOT_FOUND"

    def __init__(self, bundle_id: str, digest: str) -> None:
        super().__init__(
            f"config bundle {bundle_id!r} with digest {digest!r} is not stored on this runtime",
            bundle_id=bundle_id,
            digest=digest,
        )
        self.bundle_id = bundle_id
        self.digest = digest


class ConfigBundleInUse(FailedPrecondition):
    """Workers still reference the bundle (delete them first): ``worker_count`` of them, the first
    three (by id) in ``worker_ids``, comma-separated."""

    reason = "CONFIG_BUNDLE_IN_USE"

    def __init__(self, bundle_id: str, digest: str, worker_ids: str, worker_count: int) -> None:
        more = ", ..." if worker_count > len([w for w in worker_ids.split(",") if w]) else ""
        super().__init__(
            f"config bundle {bundle_id!r} ({digest}) is referenced by {worker_count} "
            f"worker(s): {worker_ids.replace(',', ', ')}{more}",
            bundle_id=bundle_id,
            digest=digest,
            worker_ids=worker_ids,
            worker_count=str(worker_count),
        )
        self.bundle_id = bundle_id
        self.digest = digest
        self.worker_ids = worker_ids
        self.worker_count = worker_count


class ProviderNotAvailable(FailedPrecondition):
    """A bundle's profile names a provider this host's config does not define."""

    reason = "PROVIDER_NOT_AVAILABLE"

    def __init__(self, provider: str, profile: str) -> None:
        super().__init__(
            f"profile {profile!r} needs provider {provider!r}, which this runtime does not define",
            provider=provider,
            profile=profile,
        )
        self.provider = provider
        self.profile = profile


class ResourceExhausted(RuntimeServiceError):
    reason = "RESOURCE_EXHAUSTED"


class QueueFull(ResourceExhausted):
    reason = "QUEUE_FULL"

    def __init__(self, worker_id: str, limit: int) -> None:
        super().__init__(
            f"worker {worker_id!r} input queue is full ({limit})",
            worker_id=worker_id,
            limit=str(limit),
        )
        self.worker_id = worker_id
        self.limit = limit


class TooManyWorkers(ResourceExhausted):
    reason = "TOO_MANY_WORKERS"

    def __init__(self, limit: int) -> None:
        super().__init__(f"the runtime holds its maximum of {limit} workers", limit=str(limit))
        self.limit = limit


class SubscriberLagging(ResourceExhausted):
    reason = "SUBSCRIBER_LAGGING"

    def __init__(self, last_seq: int, buffer: int) -> None:
        super().__init__(
            f"subscriber fell {buffer} events behind; resume with after_seq={last_seq}",
            last_seq=str(last_seq),
            buffer=str(buffer),
        )
        self.last_seq = last_seq
        self.buffer = buffer


class TooManySubscribers(ResourceExhausted):
    reason = "TOO_MANY_SUBSCRIBERS"

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"the runtime has its maximum of {limit} open event subscriptions", limit=str(limit)
        )
        self.limit = limit


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


class TooManyConfigBundles(ResourceExhausted):
    reason = "TOO_MANY_CONFIG_BUNDLES"  # max_bundles are stored (named like TOO_MANY_WORKERS)

    def __init__(self, limit: int) -> None:
        why = f"the runtime holds its maximum of {limit} config bundles (delete unused ones)"
        super().__init__(why, limit=str(limit))
        self.limit = limit


class OutOfRange(RuntimeServiceError):
    reason = "OUT_OF_RANGE"


class CursorExpired(OutOfRange):
    reason = "CURSOR_EXPIRED"

    def __init__(self, after_seq: int, oldest_seq: int) -> None:
        super().__init__(
            f"after_seq {after_seq} is older than retention; oldest available seq is {oldest_seq}",
            after_seq=str(after_seq),
            oldest_seq=str(oldest_seq),
        )
        self.after_seq = after_seq
        self.oldest_seq = oldest_seq


class CursorAhead(OutOfRange):
    reason = "CURSOR_AHEAD"

    def __init__(self, after_seq: int, last_seq: int) -> None:
        super().__init__(
            f"after_seq {after_seq} is ahead of the log (last seq {last_seq})",
            after_seq=str(after_seq),
            last_seq=str(last_seq),
        )
        self.after_seq = after_seq
        self.last_seq = last_seq


class Unauthenticated(RuntimeServiceError):
    reason = "UNAUTHENTICATED"


class StoreFailure(RuntimeServiceError):
    """The store failed (never the caller's fault). ``path``: the store file it is about;
    ``state``: the store's state (FAILING, DAMAGED) when a change is refused; each "" when not
    known, and then not in the metadata."""

    reason = "STORE_FAILURE"

    def __init__(self, message: str, *, path: str = "", state: str = "") -> None:
        super().__init__(message, **{k: v for k, v in (("path", path), ("state", state)) if v})
        self.path = path
        self.state = state

    def again(self) -> StoreFailure:
        """A fresh copy for one more caller: raising one instance from many places would chain
        every caller's traceback onto it."""
        err = StoreFailure(self.message, path=self.path, state=self.state)
        err.__cause__ = self.__cause__
        return err


class PermissionDenied(RuntimeServiceError):
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


class Unavailable(RuntimeServiceError):
    """Try again later: the Runtime cannot take the request now (sent with status UNAVAILABLE)."""

    reason = "UNAVAILABLE"


class RuntimeDraining(Unavailable):
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
