"""The Runtime's domain model: frozen values and enums. Protobuf never appears here; the gRPC edge
converts (runtime_server.grpc._convert), and the embedded handle converts to the client's models
(runtime_server._embedded_convert), which are the one public vocabulary.

The names are the public ones: every field here that the API carries has the proto's and the
client model's name (``Page.total_size``, ``Limits.heartbeat_interval_seconds``, TranscriptEntry's
field order), and tests/test_vocabulary_parity.py walks proto <-> server <-> client so a field
added in one place and not the others fails. Payloads identical to the engine's turn events
(TextDelta, UsageReported) are the engine's classes, not copies; the engine sits below the
Runtime, and the Runtime commits what the engine emits."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from engine import Message, Usage
from engine import TextDelta as TextDelta  # an event payload: the engine's delta, not a copy
from engine import UsageReported as UsageReported  # likewise
from engine.frozen import slot_init_all


def now() -> float:
    """Wall-clock seconds since the epoch (every timestamp in the model uses it)."""
    return time.time()


class WorkerState(enum.Enum):
    IDLE = "IDLE"
    RUNNING = "RUNNING"
    STOPPED = "STOPPED"


class RunState(enum.Enum):
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"

    @property
    def terminal(self) -> bool:
        return self not in (RunState.QUEUED, RunState.RUNNING)


class BusyPolicy(enum.Enum):
    REJECT = "REJECT"
    ENQUEUE = "ENQUEUE"
    INTERRUPT = "INTERRUPT"


class MountMode(enum.Enum):
    READ_ONLY = "READ_ONLY"
    READ_WRITE = "READ_WRITE"


@dataclass(frozen=True, slots=True)
class Mount:
    path: str
    mode: MountMode = MountMode.READ_ONLY


@dataclass(frozen=True, slots=True)
class Workspace:
    """A worker's filesystem scope: the root (read-only unless asked) and extra mounts."""

    root: str
    mounts: tuple[Mount, ...] = ()
    root_mode: MountMode = MountMode.READ_ONLY


@dataclass(frozen=True, slots=True)
class ConfigBundleRef:
    id: str
    digest: str = ""


@dataclass(frozen=True, slots=True)
class ConfigBundle:
    """A stored config bundle's metadata (its bytes are read from the store on demand).
    ``referencing_workers``/``referencing_worker_count`` are filled in when it is read."""

    id: str
    digest: str
    media_type: str
    size_bytes: int
    created_at: float
    profiles: tuple[str, ...] = ()
    referencing_workers: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    referencing_worker_count: int = 0


@dataclass(frozen=True, slots=True)
class RunError:
    code: str
    message: str


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
    usage: Usage = field(default_factory=Usage)
    workspace: Workspace | None = None
    config_bundle: ConfigBundleRef | None = None
    queued_runs: int = 0
    # Capabilities requested at create (empty = the profile's tools) and the effective tool set
    # (profile tools ∩ requested capabilities ∩ host policy), computed once at create. None only
    # for a record stored before tools were recorded: the Runtime computes it when it loads one.
    capabilities: tuple[str, ...] = ()
    tools: tuple[str, ...] | None = ()


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    worker_id: str
    state: RunState
    created_at: float
    input_text: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0
    usage: Usage = field(default_factory=Usage)
    error: RunError | None = None
    stop_reason: str = ""


@dataclass(frozen=True, slots=True)
class TranscriptEntry:
    """One committed history entry of a worker, with its position and the run that produced it
    (fields in the proto's order; build it by keyword)."""

    worker_id: str
    index: int
    run_id: str
    created_at: float
    message: Message
    # The seq of the event that committed it (InputCommitted / MessageCommitted), stamped by the
    # event log when that event is assigned its seq (runtime._transcript_seq); SQLite keeps it
    # (a column of the transcript row). 0 = not known: written by a version that did not record it.
    seq: int = 0


# --- event payloads ---


@dataclass(frozen=True, slots=True)
class WorkerCreated:
    worker: Worker


@dataclass(frozen=True, slots=True)
class WorkerStateChanged:
    previous: WorkerState
    state: WorkerState


@dataclass(frozen=True, slots=True)
class RunQueued:
    run: Run


@dataclass(frozen=True, slots=True)
class RunStarted:
    run: Run


@dataclass(frozen=True, slots=True)
class InputCommitted:
    entry: TranscriptEntry


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call_id: str
    tool_name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call_id: str
    tool_name: str
    result: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class MessageCommitted:
    entry: TranscriptEntry


@dataclass(frozen=True, slots=True)
class PartialDiscarded:
    """The provider stream failed midway and is retried: drop this run's deltas since the last
    MessageCommitted."""

    reason: str


@dataclass(frozen=True, slots=True)
class RunFinished:
    run: Run


@dataclass(frozen=True, slots=True)
class WorkerStopped:
    reason: str = ""


@dataclass(frozen=True, slots=True)
class WorkerDeleted:
    pass


class DiagnosticLevel(enum.Enum):
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


@dataclass(frozen=True, slots=True)
class Diagnostic:
    level: DiagnosticLevel
    code: str
    message: str
    time: float = 0.0
    worker_id: str = ""
    run_id: str = ""


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
)


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    time: float
    worker_id: str
    run_id: str
    payload: Payload


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound the Runtime enforces; reported by GetRuntime."""

    max_page_size: int = 1000
    default_page_size: int = 100
    max_input_chars: int = 1_000_000
    max_display_name_chars: int = 200
    max_labels: int = 64
    max_label_chars: int = 256
    max_request_id_chars: int = 128
    max_queue_per_worker: int = 16
    max_workers: int = 100_000
    subscriber_buffer_events: int = 10_000
    event_batch_max: int = 1000
    transcript_page_max: int = 1000
    diagnostics_capacity: int = 1000
    idempotency_keys_per_worker: int = 1024
    idempotency_keys_create: int = 100_000
    event_retention_events: int = 1_000_000
    event_retention_seconds: float = 0.0  # 0 = no age limit
    heartbeat_interval_seconds: float = 10.0
    max_message_bytes: int = 4 * 1024 * 1024
    # Finished runs kept for GetRun (oldest forgotten first; a forgotten run is RUN_NOT_FOUND).
    max_retained_runs: int = 100_000
    # Request strings and lists the Runtime would otherwise store or echo at any length
    # (checked before any lookup; INVALID_ARGUMENT naming the field past them).
    max_id_chars: int = 128  # worker_id, run_id, profile, config_bundle.id
    max_ref_chars: int = 256  # config_bundle.digest, page_token
    max_path_chars: int = 4096  # workspace.root, workspace.mounts[].path (Linux PATH_MAX)
    max_reason_chars: int = 1000  # StopWorker.reason
    # The runtime-wide memory budget (estimated bytes: the memory store's data, transcript
    # windows, queued inputs, histories read for active runs, records); new work past it is
    # refused with MEMORY_BUDGET_EXCEEDED. Transcript windows: per worker, and all together.
    max_memory_bytes: int = 1024 * 1024 * 1024
    transcript_window_bytes: int = 4 * 1024 * 1024
    transcript_cache_bytes: int = 256 * 1024 * 1024
    # Workspaces: mounts one workspace may have besides its root, and the file tools' caps.
    max_mounts: int = 16
    max_file_read_bytes: int = 64 * 1024
    max_file_scan_bytes: int = 16 * 1024 * 1024
    max_file_write_bytes: int = 1024 * 1024
    # Config bundles: bytes of one, how many (id + digest) are kept, profiles one may define,
    # and the characters of an id.
    max_bundle_bytes: int = 256 * 1024
    max_bundles: int = 1000
    max_bundle_profiles: int = 64
    max_bundle_id_chars: int = 128
    # The durable store's write backlog (events written, not yet committed) at which a run's
    # event stream waits for commits: bounds the write queue and the publish latency.
    store_write_backlog_events: int = 1024
    # Open event subscriptions over the whole runtime (each holds a buffer and a stream; ~25 KB
    # idle): without a bound, one client could open them until the process runs out of memory.
    max_subscribers: int = 10_000
    # gRPC connections (HTTP/2), each 0 = off. An idle connection (no call in flight) is closed
    # with GOAWAY after ``max_connection_idle_seconds`` (clients reconnect when they next call);
    # any connection is closed after ``max_connection_age_seconds`` plus the grace its calls
    # get to finish (a subscription cut this way resumes); a client pinging more often than
    # ``min_client_ping_interval_seconds`` without data is sent GOAWAY (after 2 strikes, grpc's
    # default); at most ``max_concurrent_streams`` calls run at once on one connection (more
    # wait in the client). See runtime_server.grpc._server for why each default.
    max_connection_idle_seconds: float = 300.0
    max_connection_age_seconds: float = 0.0
    max_connection_age_grace_seconds: float = 300.0
    min_client_ping_interval_seconds: float = 10.0
    max_concurrent_streams: int = 1000


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_page_token: str = ""
    total_size: int = 0  # every item the listing holds, not only what is left after the token


# --- size estimates ---

# A cheap estimate in characters, kept for callers that weigh text. Pages and batches are cut
# by runtime_server.wire_size instead: an upper bound of the encoded size, in bytes.

# Characters of an event's wire form besides its variable text: ids, time, enums, usage, framing.
EVENT_OVERHEAD_CHARS = 256


def message_chars(msg: Message) -> int:
    """The variable text a message carries, in characters."""
    n = len(msg.text) + len(msg.reasoning) + len(msg.reasoning_signature) + len(msg.tool_name)
    for c in msg.tool_calls:
        n += len(c.call_id) + len(c.name) + len(c.arguments) + len(c.extra)
    for b in msg.reasoning_blocks:
        n += len(b.text) + len(b.signature) + len(b.data)
    return n


def _run_chars(r: Run) -> int:
    return len(r.error.message) + len(r.stop_reason) if r.error else len(r.stop_reason)


def _worker_chars(w: Worker) -> int:
    n = len(w.display_name) + sum(len(k) + len(v) for k, v in w.labels.items())
    if w.workspace is not None:
        n += len(w.workspace.root) + sum(len(mt.path) + 8 for mt in w.workspace.mounts)
    n += sum(len(c) + 4 for c in w.capabilities) + sum(len(t) + 4 for t in w.tools or ())
    return n


_CHARS: dict[type, Callable[[Any], int]] = {
    TextDelta: lambda p: len(p.text),
    ReasoningDelta: lambda p: len(p.text),
    ToolCallStarted: lambda p: len(p.call_id) + len(p.tool_name) + len(p.arguments),
    ToolCallFinished: lambda p: len(p.call_id) + len(p.tool_name) + len(p.result),
    InputCommitted: lambda p: message_chars(p.entry.message),
    MessageCommitted: lambda p: message_chars(p.entry.message),
    RunQueued: lambda p: _run_chars(p.run),
    RunStarted: lambda p: _run_chars(p.run),
    RunFinished: lambda p: _run_chars(p.run),
    WorkerCreated: lambda p: _worker_chars(p.worker),
    WorkerStopped: lambda p: len(p.reason),
    PartialDiscarded: lambda p: len(p.reason),
    Diagnostic: lambda p: len(p.code) + len(p.message),
}


def event_chars(e: Event) -> int:
    """A cheap estimate of ``e``'s wire size in characters (the text it carries plus a fixed
    overhead; a UTF-8 character is at most 4 bytes). Pages and batches are bounded with it."""
    f = _CHARS.get(type(e.payload))
    return EVENT_OVERHEAD_CHARS + (f(e.payload) if f is not None else 0)


@dataclass(frozen=True, slots=True)
class TranscriptPage(Page[TranscriptEntry]):
    """A page of GetTranscript plus the cursor to subscribe after (see
    runtime.transcript_seq.resume_after_seq): loading every page and then subscribing with
    ``after_seq = resume_after_seq`` of the last page read neither misses nor repeats anything,
    including the text of a message still being generated."""

    resume_after_seq: int = 0


# every record above: built without an object.__setattr__ per field (engine.frozen)
slot_init_all(globals())
