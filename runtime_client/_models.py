"""The client's models: frozen dataclasses and string enums mirroring the ``worker_runtime.v1`` API.

Client code never sees protobuf: ``_convert`` builds these from the wire messages (and back, for
requests). Conventions, kept uniform so nothing needs a per-field rule:

- times are float seconds since the epoch, ``0.0`` when unset;
- enums are ``StrEnum`` with the proto prefix dropped (``WorkerState.IDLE``); ``UNSPECIFIED``
  stands for an unset value or a value newer than this client;
- repeated fields are tuples, maps are plain dicts (treat them as read-only);
- optional sub-messages are ``None`` when absent.

An :class:`Event`'s ``payload`` is one of the payload dataclasses below (see :data:`Payload`);
each has a ``KIND`` class attribute equal to the proto oneof field name (``"text_delta"``), which
``Event.kind`` returns, so filtering and printing need no ``isinstance`` chains.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar, Generic, TypeVar

if TYPE_CHECKING:
    from runtime_client.api import types_pb2

__all__ = [
    "Accepted",
    "BusyPolicy",
    "Capabilities",
    "ConfigBundleRef",
    "Created",
    "Diagnostic",
    "DiagnosticLevel",
    "Event",
    "EventsPage",
    "Heartbeat",
    "InputCommitted",
    "Limits",
    "Message",
    "MessageCommitted",
    "Mount",
    "MountMode",
    "Page",
    "TranscriptPage",
    "PartialDiscarded",
    "Payload",
    "Profile",
    "ReasoningDelta",
    "Role",
    "Run",
    "RunError",
    "RunFinished",
    "RunQueued",
    "RunStarted",
    "RunState",
    "RuntimeInfo",
    "RuntimeState",
    "StoreState",
    "TextDelta",
    "ToolCall",
    "ToolCallFinished",
    "ToolCallStarted",
    "TranscriptEntry",
    "UnknownPayload",
    "Usage",
    "UsageSummary",
    "Worker",
    "WorkerCounts",
    "WorkerCreated",
    "WorkerDeleted",
    "WorkerState",
    "WorkerStateChanged",
    "WorkerStopped",
    "Workspace",
    "WorkspaceClaim",
    "UsageReported",
]

# --- enums ------------------------------------------------------------------------------------


class WorkerState(enum.StrEnum):
    """Worker lifecycle: ``IDLE`` <-> ``RUNNING`` -> ``STOPPED``."""

    UNSPECIFIED = "UNSPECIFIED"
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class RunState(enum.StrEnum):
    """Run lifecycle: ``QUEUED`` -> ``RUNNING`` -> one terminal state."""

    UNSPECIFIED = "UNSPECIFIED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_RUN_STATES


_TERMINAL_RUN_STATES = frozenset(
    {RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED, RunState.INTERRUPTED}
)


class BusyPolicy(enum.StrEnum):
    """What ``send_input`` does when the worker already has an active run."""

    REJECT = "REJECT"
    ENQUEUE = "ENQUEUE"
    INTERRUPT = "INTERRUPT"


class MountMode(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    READ_ONLY = "READ_ONLY"
    READ_WRITE = "READ_WRITE"


class Role(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    USER = "USER"
    ASSISTANT = "ASSISTANT"
    TOOL = "TOOL"


class RuntimeState(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    STARTING = "STARTING"
    SERVING = "SERVING"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


class StoreState(enum.StrEnum):
    """Whether the Runtime's store can write: FAILING (e.g. a full disk: changes are refused
    with StoreFailure, health is NOT_SERVING, it resumes by itself) or DAMAGED (restart needed)."""

    UNSPECIFIED = "UNSPECIFIED"
    OK = "OK"
    FAILING = "FAILING"
    DAMAGED = "DAMAGED"


class DiagnosticLevel(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


# --- values -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Usage:
    """Token usage, normalised across providers."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """``get_usage``: the usage of a worker (or the whole Runtime) and how many runs it covers.

    For the whole Runtime, ``usage``/``runs`` cover the workers it holds now (they fall when a
    worker is deleted) and ``lifetime_usage``/``lifetime_runs`` everything since its store was
    created (they never decrease). For one worker, the lifetime figures equal the current ones."""

    usage: Usage
    runs: int = 0
    lifetime_usage: Usage = Usage()
    lifetime_runs: int = 0


@dataclass(frozen=True, slots=True)
class Mount:
    path: str
    mode: MountMode = MountMode.READ_ONLY


@dataclass(frozen=True, slots=True)
class Workspace:
    """A filesystem scope for a worker's tools: the root (read-only unless ``root_mode`` is
    READ_WRITE) and extra mounts, each read-only or read-write."""

    root: str
    mounts: tuple[Mount, ...] = ()
    root_mode: MountMode = MountMode.READ_ONLY


@dataclass(frozen=True, slots=True)
class ConfigBundleRef:
    id: str
    digest: str = ""


@dataclass(frozen=True, slots=True)
class Worker:
    worker_id: str
    runtime_id: str
    state: WorkerState
    profile: str
    display_name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    active_run_id: str = ""
    created_at: float = 0.0
    usage: Usage = Usage()
    workspace: Workspace | None = None
    config_bundle: ConfigBundleRef | None = None
    queued_runs: int = 0
    capabilities: tuple[str, ...] = ()  # as requested (empty = the profile's tools)
    tools: tuple[str, ...] = ()  # the effective tool set the worker's runs may call


@dataclass(frozen=True, slots=True)
class WorkspaceClaim:
    """A path a live worker holds (real path, symlinks resolved), read-only or read-write."""

    worker_id: str
    path: str
    mode: MountMode = MountMode.READ_ONLY


@dataclass(frozen=True, slots=True)
class RunError:
    """Why a run failed: a stable ``code`` (CANCELLED, PROVIDER_HTTP_ERROR, ...) and a message."""

    code: str
    message: str = ""


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    worker_id: str
    state: RunState
    created_at: float = 0.0
    started_at: float = 0.0
    finished_at: float = 0.0
    usage: Usage = Usage()
    error: RunError | None = None
    stop_reason: str = ""

    @property
    def terminal(self) -> bool:
        return self.state in _TERMINAL_RUN_STATES


@dataclass(frozen=True, slots=True)
class ToolCall:
    call_id: str
    name: str
    arguments: str = ""  # JSON, as the model produced it


@dataclass(frozen=True, slots=True)
class Message:
    role: Role
    text: str = ""
    reasoning: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str = ""  # ROLE_TOOL: the call this result answers
    tool_name: str = ""
    is_error: bool = False
    stop_reason: str = ""  # "cancelled" / "interrupted" on an incomplete message
    # An assistant answer cut short by a cancel or a shutdown: what the model had said so far.
    incomplete: bool = False


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One committed entry of a worker's history."""

    worker_id: str
    index: int
    run_id: str
    created_at: float
    message: Message
    # The seq of the event that committed it; 0 = not known (written by a Runtime version that
    # did not record it).
    seq: int = 0


@dataclass(frozen=True, slots=True)
class Profile:
    """A profile as clients see it (no API keys, no provider URLs)."""

    name: str
    provider: str = ""
    provider_kind: str = ""
    model: str = ""
    description: str = ""
    tools: tuple[str, ...] = ()
    builtin: bool = False
    max_tokens: int = 0
    max_tool_rounds: int = 0
    # Seconds one model request may take in total (keep-alives do not extend it).
    request_deadline_s: float = 0.0


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the Runtime enforces (0 where the server reports none)."""

    max_page_size: int = 0
    default_page_size: int = 0
    max_input_chars: int = 0
    max_display_name_chars: int = 0
    max_labels: int = 0
    max_label_chars: int = 0
    max_request_id_chars: int = 0
    max_queue_per_worker: int = 0
    max_workers: int = 0
    subscriber_buffer_events: int = 0
    event_batch_max: int = 0
    transcript_page_max: int = 0
    diagnostics_capacity: int = 0
    idempotency_keys_per_worker: int = 0
    idempotency_keys_create: int = 0
    event_retention_events: int = 0
    event_retention_seconds: float = 0.0
    heartbeat_interval_seconds: float = 0.0
    max_message_bytes: int = 0
    max_retained_runs: int = 0
    max_id_chars: int = 0
    max_ref_chars: int = 0
    max_path_chars: int = 0
    max_reason_chars: int = 0
    max_memory_bytes: int = 0
    transcript_window_bytes: int = 0
    transcript_cache_bytes: int = 0
    max_mounts: int = 0
    max_file_read_bytes: int = 0
    max_file_scan_bytes: int = 0
    max_file_write_bytes: int = 0
    store_write_backlog_events: int = 0


@dataclass(frozen=True, slots=True)
class Capabilities:
    provider_kinds: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    worker_capabilities: tuple[str, ...] = ()  # capabilities the host allows workers


@dataclass(frozen=True, slots=True)
class WorkerCounts:
    idle: int = 0
    running: int = 0
    stopped: int = 0
    total: int = 0


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    runtime_id: str
    state: RuntimeState
    version: str = ""
    store_kind: str = ""
    started_at: float = 0.0
    workers: WorkerCounts = WorkerCounts()
    active_runs: int = 0
    queued_runs: int = 0
    last_seq: int = 0  # newest committed seq
    oldest_seq: int = 0  # oldest retained seq
    subscribers: int = 0
    limits: Limits = Limits()
    capabilities: Capabilities = Capabilities()
    usage: Usage = Usage()  # of the workers held now: falls when a worker is deleted
    auth_required: bool = False
    # since the store was created, deleted workers included: never decreases
    lifetime_usage: Usage = Usage()
    lifetime_runs: int = 0
    workspace_claims: int = 0
    workspace_claims_read_write: int = 0
    store_state: StoreState = StoreState.UNSPECIFIED
    store_error: str = ""
    memory_bytes: int = 0  # estimated bytes held against limits.max_memory_bytes


# --- event payloads ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerCreated:
    KIND: ClassVar[str] = "worker_created"
    worker: Worker


@dataclass(frozen=True, slots=True)
class WorkerStateChanged:
    KIND: ClassVar[str] = "worker_state_changed"
    previous: WorkerState
    state: WorkerState


@dataclass(frozen=True, slots=True)
class RunQueued:
    """The input was accepted; ``Accepted.seq`` is this event's seq."""

    KIND: ClassVar[str] = "run_queued"
    run: Run


@dataclass(frozen=True, slots=True)
class RunStarted:
    KIND: ClassVar[str] = "run_started"
    run: Run


@dataclass(frozen=True, slots=True)
class InputCommitted:
    KIND: ClassVar[str] = "input_committed"
    entry: TranscriptEntry


@dataclass(frozen=True, slots=True)
class TextDelta:
    KIND: ClassVar[str] = "text_delta"
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    KIND: ClassVar[str] = "reasoning_delta"
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    KIND: ClassVar[str] = "tool_call_started"
    call_id: str
    tool_name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    KIND: ClassVar[str] = "tool_call_finished"
    call_id: str
    tool_name: str
    result: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class MessageCommitted:
    KIND: ClassVar[str] = "message_committed"
    entry: TranscriptEntry


@dataclass(frozen=True, slots=True)
class UsageReported:
    KIND: ClassVar[str] = "usage_reported"
    usage: Usage


@dataclass(frozen=True, slots=True)
class PartialDiscarded:
    """The provider stream failed midway and is retried: drop this run's text and reasoning
    deltas received since its last MessageCommitted; they will be streamed again."""

    KIND: ClassVar[str] = "partial_discarded"
    reason: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    """Exactly one per run: its terminal state, error and usage."""

    KIND: ClassVar[str] = "run_finished"
    run: Run


@dataclass(frozen=True, slots=True)
class WorkerStopped:
    KIND: ClassVar[str] = "worker_stopped"
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WorkerDeleted:
    KIND: ClassVar[str] = "worker_deleted"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """An operator-facing note; both an event payload and a ``list_diagnostics`` item."""

    KIND: ClassVar[str] = "diagnostic"
    level: DiagnosticLevel
    code: str
    message: str
    time: float = 0.0
    worker_id: str = ""
    run_id: str = ""


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Live streams only, seq 0: ``last_seq`` is the newest committed seq ("quiet", not "cut")."""

    KIND: ClassVar[str] = "heartbeat"
    last_seq: int


@dataclass(frozen=True, slots=True)
class UnknownPayload:
    """A payload this client version does not know (a newer server); the event is still
    delivered so cursors stay gap-free."""

    KIND: ClassVar[str] = "unknown"


Payload = (
    WorkerCreated
    | WorkerStateChanged
    | RunQueued
    | RunStarted
    | InputCommitted
    | TextDelta
    | ReasoningDelta
    | ToolCallStarted
    | ToolCallFinished
    | MessageCommitted
    | UsageReported
    | PartialDiscarded
    | RunFinished
    | WorkerStopped
    | WorkerDeleted
    | Diagnostic
    | Heartbeat
    | UnknownPayload
)


@dataclass(frozen=True, slots=True)
class Event:
    """Anything observable that happened in the Runtime. ``seq`` is strictly increasing across the
    Runtime (0 only for heartbeats). ``raw`` is the wire message it came from (not compared, not
    shown in repr) for callers that need a field this client does not model yet."""

    seq: int
    worker_id: str
    run_id: str
    time: float
    payload: Payload
    raw: types_pb2.Event | None = field(default=None, repr=False, compare=False)

    @property
    def kind(self) -> str:
        """The payload's oneof name, e.g. ``"text_delta"``."""
        return self.payload.KIND


# --- responses --------------------------------------------------------------------------------

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_page_token`` back for the next ("" = last page)."""

    items: tuple[T, ...]
    next_page_token: str = ""
    total_size: int = 0

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class TranscriptPage(Page["TranscriptEntry"]):
    """``get_transcript``: a page plus the cursor to subscribe after. Read the pages, then
    subscribe with ``after_seq = resume_after_seq`` of the last page read: nothing the transcript
    holds comes again and nothing is missed, including the deltas of a message still being
    generated (the cursor is then the seq of the active run's newest entry)."""

    resume_after_seq: int = 0


@dataclass(frozen=True, slots=True)
class EventsPage:
    """``list_events``: a batch plus the log's bounds when it was read and the next cursor."""

    events: tuple[Event, ...]
    last_seq: int = 0
    oldest_seq: int = 0
    next_after_seq: int = 0


@dataclass(frozen=True, slots=True)
class Accepted:
    """``send_input``: the run and the seq of its RunQueued event (subscribe after it to see
    everything the run does)."""

    run: Run
    seq: int


@dataclass(frozen=True, slots=True)
class Created:
    """``create_worker``: the worker, the seq of its WorkerCreated event, and the run started by
    ``initial_input`` if one was given."""

    worker: Worker
    seq: int
    initial_run: Run | None = None
