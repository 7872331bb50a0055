"""The registry's values: runtime health states, statuses, worker views, merged-stream items and
options. Frozen dataclasses and string enums, like the client's models.

A :class:`RuntimeStatus` deliberately has no target, address or token: statuses are what a
Backend serialises for browsers, and a browser never sees a runtime's address or credentials.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Literal

from runtime_client._models import Event, Profile, RuntimeInfo, Worker

__all__ = [
    "CursorReset",
    "RegistryEvent",
    "RegistryItem",
    "RegistryOptions",
    "RuntimeHealth",
    "RuntimeLoad",
    "RuntimeStateChanged",
    "RuntimeStatus",
    "WorkerView",
]


class RuntimeHealth(enum.StrEnum):
    """The registry's view of one runtime (not the runtime's own ``RuntimeInfo.state``).

    ``CONNECTING`` → ``READY`` ⇄ ``DRAINING``; any → ``UNREACHABLE`` → ``READY``; any →
    ``AUTH_FAILED`` (→ ``READY`` once a probe is accepted); any → ``IDENTITY_CHANGED`` (final:
    the address now answers as another runtime).
    """

    CONNECTING = "CONNECTING"
    READY = "READY"
    DRAINING = "DRAINING"
    UNREACHABLE = "UNREACHABLE"
    AUTH_FAILED = "AUTH_FAILED"
    IDENTITY_CHANGED = "IDENTITY_CHANGED"


@dataclass(frozen=True, slots=True)
class RuntimeLoad:
    """What placement weighs: runs active and queued (from the cached GetRuntime, plus the
    registry's own placements since), then workers (from the worker cache)."""

    active_runs: int = 0
    queued_runs: int = 0
    workers: int = 0


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """One runtime as the registry sees it now (cached; reading it never waits)."""

    runtime_id: str | None  # None until first contact (or a config's expected_runtime_id)
    alias: str  # a display name from config; never sent to the runtime
    kind: Literal["embedded", "remote"]
    state: RuntimeHealth
    since: float  # time.time() of the last state change
    last_error: str = ""
    info: RuntimeInfo | None = None  # the last GetRuntime answer
    profiles: tuple[Profile, ...] = ()  # the last ListProfiles answer
    load: RuntimeLoad = RuntimeLoad()


@dataclass(frozen=True, slots=True)
class WorkerView:
    """A worker of the merged view; ``stale``: its runtime is not READY, so the entry is the
    last one known and the worker cannot be driven now."""

    runtime_id: str
    worker: Worker
    stale: bool = False


@dataclass(frozen=True, slots=True)
class RegistryEvent:
    runtime_id: str
    event: Event


@dataclass(frozen=True, slots=True)
class RuntimeStateChanged:
    """A runtime's health changed (reported in-band in merged subscriptions)."""

    runtime_id: str
    state: RuntimeHealth
    previous: RuntimeHealth
    error: str = ""


@dataclass(frozen=True, slots=True)
class CursorReset:
    """The subscription's cursor on this runtime aged out of its retention: events between were
    lost to this stream. Reload the snapshot (workers, transcripts); the stream goes on after
    ``last_seq``."""

    runtime_id: str
    oldest_seq: int
    last_seq: int


RegistryItem = RegistryEvent | RuntimeStateChanged | CursorReset


@dataclass(frozen=True, slots=True)
class RegistryOptions:
    """Timing and bounds of the registry (all in seconds unless named otherwise).

    ``probe_timeout_s`` is the deadline of every health probe (GetRuntime, ListProfiles, a
    snapshot page); ``call_timeout_s`` the deadline of every other unary call made through the
    registry. ``refresh_interval_s``: how often a READY runtime's GetRuntime is read again (load,
    identity, a half-open connection). Reconnects wait ``backoff_initial_s`` doubling to
    ``backoff_max_s``, each less up to half at random (never a fixed delay); after
    ``recreate_channel_after`` failed probes in a row the channel is closed and made anew. A
    rejected token is probed again after ``auth_probe_initial_s``, doubling to
    ``auth_probe_max_s``. ``retry_budget_s`` bounds ``create_worker`` / ``send_input`` retries
    (waiting for the runtime to be READY again) when the caller gives no ``timeout``.
    ``subscription_buffer`` items per merged subscription are held before its feeds wait.
    ``max_receive_message_bytes`` bounds every answer from a remote runtime (unless its config
    says otherwise; see ``RuntimeClient``): a runtime answering more is UNREACHABLE with
    MESSAGE_TOO_LARGE, and the answer is never held.
    """

    probe_timeout_s: float = 2.0
    call_timeout_s: float = 10.0
    refresh_interval_s: float = 1.0
    backoff_initial_s: float = 0.1
    backoff_max_s: float = 3.0
    recreate_channel_after: int = 3
    auth_probe_initial_s: float = 4.0
    auth_probe_max_s: float = 60.0
    retry_budget_s: float = 15.0
    subscription_buffer: int = 1024
    keepalive_time_s: float = 30.0
    keepalive_timeout_s: float = 10.0
    max_receive_message_bytes: int = 4 * 1024 * 1024  # RuntimeClient's default

    def __post_init__(self) -> None:
        for name in (
            "probe_timeout_s",
            "call_timeout_s",
            "refresh_interval_s",
            "backoff_initial_s",
            "backoff_max_s",
            "auth_probe_initial_s",
            "auth_probe_max_s",
            "keepalive_time_s",
            "keepalive_timeout_s",
        ):
            if not getattr(self, name) > 0:
                raise ValueError(f"RegistryOptions.{name} must be > 0")
        if self.retry_budget_s < 0:
            raise ValueError("RegistryOptions.retry_budget_s must be >= 0")
        if self.recreate_channel_after < 1:
            raise ValueError("RegistryOptions.recreate_channel_after must be >= 1")
        limit = self.max_receive_message_bytes
        if isinstance(limit, bool) or not isinstance(limit, int) or not 65536 <= limit < 2**31:
            raise ValueError("RegistryOptions.max_receive_message_bytes must be 65536..2**31-1")
        if self.subscription_buffer < 1:
            raise ValueError("RegistryOptions.subscription_buffer must be >= 1")
