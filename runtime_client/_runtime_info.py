"""The client's models of what ManagementService and GetUsage answer: the Runtime's description
(``RuntimeInfo`` with its counts, ``Limits`` and ``Capabilities``), ``Profile``, and token
``Usage``. Re-exported by ``_models`` and ``runtime_client``; the conventions are ``_models``'s
(frozen, keyword-built, float-second times, tuples for repeated fields)."""

from __future__ import annotations

from dataclasses import dataclass

from runtime_client._enums import RuntimeState, StoreState


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
    # Context policy: the most history one request carries, in estimated tokens and in messages
    # (0 = no such bound), and "none" or "summarize".
    context_max_tokens: int = 0
    context_max_messages: int = 0
    context_compaction: str = ""


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
    max_bundle_bytes: int = 0
    max_bundles: int = 0
    max_bundle_profiles: int = 0
    max_bundle_id_chars: int = 0
    store_write_backlog_events: int = 0
    max_subscribers: int = 0
    # gRPC connections (0 = off): idle and age bounds, the age's grace for calls in flight, the
    # shortest interval a client may ping at without data, calls at once per connection
    max_connection_idle_seconds: float = 0.0
    max_connection_age_seconds: float = 0.0
    max_connection_age_grace_seconds: float = 0.0
    min_client_ping_interval_seconds: float = 0.0
    max_concurrent_streams: int = 0


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
