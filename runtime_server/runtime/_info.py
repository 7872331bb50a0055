"""What the Runtime answers with: its state, its :class:`RuntimeInfo` snapshot, the results of
CreateWorker, SendInput and ListEvents, and :func:`limits_from` (config overrides -> Limits).

Plain frozen values with no behaviour, kept apart from the Runtime so that reading the Runtime is
reading what it does, not what it returns."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import engine
from runtime_server.model import Event, Limits, Run, Worker, WorkerState
from runtime_server.runtime._payload_filter import FEATURE as PAYLOAD_FILTER_FEATURE
from runtime_server.runtime._storewatch import StoreState

try:
    VERSION = version("worker-runtime")
except PackageNotFoundError:  # running from a source tree without an install
    VERSION = "0.0.0+source"

FEATURES = (
    "single_flight",
    "busy_policy_enqueue",
    "busy_policy_interrupt",
    "idempotent_requests",
    "event_replay",
    "event_subscription",
    "heartbeats",
    "cancellation",
    "usage",
    "diagnostics",
    "workspaces",
    "capabilities",
    "config_bundles",
    PAYLOAD_FILTER_FEATURE,
)


class RuntimeState(enum.Enum):
    STARTING = "STARTING"
    SERVING = "SERVING"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


@dataclass(frozen=True, slots=True)
class RuntimeInfo:
    runtime_id: str
    state: RuntimeState
    version: str
    store_kind: str
    started_at: float
    workers_by_state: Mapping[WorkerState, int]
    active_runs: int
    queued_runs: int
    last_seq: int
    oldest_seq: int
    subscribers: int
    limits: Limits
    provider_kinds: tuple[str, ...]
    profiles: tuple[str, ...]
    features: tuple[str, ...]
    usage: engine.Usage  # of the workers held now (finished runs)
    workspace_claims: int = 0
    workspace_claims_read_write: int = 0
    worker_capabilities: tuple[str, ...] = ()
    store_state: StoreState = StoreState.OK  # not OK: changes are refused (see _storewatch)
    store_error: str = ""
    # since the store was created: never decreases (deletes and restarts included; see _lifetime)
    lifetime_usage: engine.Usage = field(default_factory=engine.Usage)
    lifetime_runs: int = 0
    memory_bytes: int = 0  # estimated, against limits.max_memory_bytes (see _budget)


@dataclass(frozen=True, slots=True)
class Accepted:
    """SendInput's answer: the run as accepted, and the seq of the event that accepted it."""

    run: Run
    seq: int


@dataclass(frozen=True, slots=True)
class Created:
    worker: Worker
    seq: int
    initial_run: Run | None = None


@dataclass(frozen=True, slots=True)
class EventsPage:
    events: tuple[Event, ...]
    last_seq: int  # the committed head of the log when read
    oldest_seq: int


# The largest value of each limit. Most are counts GetRuntime reports as uint32 and grpc takes
# as a C int (max_message_bytes, max_concurrent_streams): up to 2**31 - 1. Byte sizes and counts
# reported as uint64 go further. Seconds grpc takes in milliseconds (a C int) stop at ~24.8 days;
# other seconds at 2**31 - 1. Before these bounds, `inf`, `nan` or a huge number in [limits]
# stopped serve with a traceback (OverflowError) or made every GetRuntime answer INTERNAL.
_INT32_MAX = 2**31 - 1
_WIDE_LIMITS = frozenset(
    {
        "event_retention_events",
        "max_memory_bytes",
        "transcript_window_bytes",
        "transcript_cache_bytes",
        "max_file_scan_bytes",
    }
)
_MILLISECOND_LIMITS = frozenset(
    {
        "max_connection_idle_seconds",
        "max_connection_age_seconds",
        "max_connection_age_grace_seconds",
        "min_client_ping_interval_seconds",
    }
)


# Page and batch sizes: 0 would not mean "off" but pages that are always empty, which a client
# paging through events, a transcript or diagnostics cannot tell from the end of the data.
_AT_LEAST_ONE = frozenset(
    {"max_page_size", "default_page_size", "event_batch_max", "transcript_page_max"}
)


def limit_max(key: str) -> float:
    """The largest value ``[limits] key`` accepts (see above)."""
    if key in _WIDE_LIMITS:
        return 2**63 - 1
    if key in _MILLISECOND_LIMITS:
        return _INT32_MAX // 1000
    return _INT32_MAX


def limits_from(overrides: Mapping[str, Any]) -> Limits:
    """Build :class:`Limits` from config overrides, rejecting unknown keys and bad values."""
    known = {f.name: f for f in fields(Limits)}
    defaults = Limits()
    values: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            raise ValueError(f"limits.{key}: unknown limit")
        want = type(getattr(defaults, key))
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ValueError(f"limits.{key}: must be a non-negative number")  # nan included
        if value < 1 and key in _AT_LEAST_ONE:
            raise ValueError(f"limits.{key}: must be at least 1")
        if value > limit_max(key):  # inf included
            raise ValueError(f"limits.{key}: must be at most {limit_max(key):,}")
        values[key] = want(value)
    return replace(defaults, **values)
