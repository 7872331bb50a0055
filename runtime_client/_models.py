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

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from runtime_client._enums import (
    _TERMINAL_RUN_STATES,
    BusyPolicy,
    DiagnosticLevel,
    MountMode,
    Role,
    RunState,
    RuntimeState,
    StoreState,
    WorkerState,
)
from runtime_client._responses import Accepted, Created, EventsPage, Page, TranscriptPage
from runtime_client._runtime_info import (
    Capabilities,
    Limits,
    Profile,
    RuntimeInfo,
    Usage,
    UsageSummary,
    WorkerCounts,
)

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

# --- values -----------------------------------------------------------------------------------


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
