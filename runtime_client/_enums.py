"""The client's enums: ``StrEnum`` with the proto prefix dropped (``WorkerState.IDLE``);
``UNSPECIFIED`` stands for an unset value or a value newer than this client. Part of the public
vocabulary (re-exported by ``runtime_client`` and ``_models``); kept apart so the model module
stays readable."""

from __future__ import annotations

import enum

__all__ = [
    "WorkerState",
    "RunState",
    "BusyPolicy",
    "MountMode",
    "Role",
    "RuntimeState",
    "StoreState",
    "DiagnosticLevel",
]


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
