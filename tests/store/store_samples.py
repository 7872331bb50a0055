"""Sample domain values for the store tests: every payload type with every field set (and once with
defaults), plus small builders. Shared by the contract, SQLite and codec tests."""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Protocol

from engine import Message, Role, StopReason, ToolCall, Usage
from runtime_server.model import (
    ConfigBundleRef,
    Diagnostic,
    DiagnosticLevel,
    Event,
    InputCommitted,
    MessageCommitted,
    Mount,
    MountMode,
    PartialDiscarded,
    Payload,
    ReasoningDelta,
    Run,
    RunError,
    RunFinished,
    RunQueued,
    RunStarted,
    RunState,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptEntry,
    UsageReported,
    Worker,
    WorkerCreated,
    WorkerDeleted,
    WorkerState,
    WorkerStateChanged,
    WorkerStopped,
    Workspace,
)
from runtime_server.store import Store

RUNTIME_ID = "rt-0001"
FULL_USAGE = Usage(11, 22, 3, 4, 5)


def worker(worker_id: str = "w1", **overrides: object) -> Worker:
    fields: dict[str, object] = {
        "worker_id": worker_id,
        "runtime_id": RUNTIME_ID,
        "state": WorkerState.RUNNING,
        "profile": "echo",
        "display_name": "Wörker ✓",
        "labels": {"team": "a", "k": ""},
        "active_run_id": "r1",
        "created_at": 1_700_000_000.125,
        "usage": FULL_USAGE,
        "workspace": Workspace(
            "/ws",
            (Mount("/data", MountMode.READ_WRITE), Mount("/ro", MountMode.READ_ONLY)),
            MountMode.READ_WRITE,
        ),
        "config_bundle": ConfigBundleRef("bundle", "sha256:abc"),
        "queued_runs": 2,
        "capabilities": ("fs.read", "fs.write"),
        "tools": ("read_file", "write_file"),
    }
    fields.update(overrides)
    return Worker(**fields)  # type: ignore[arg-type]


def run(run_id: str = "r1", worker_id: str = "w1", **overrides: object) -> Run:
    fields: dict[str, object] = {
        "run_id": run_id,
        "worker_id": worker_id,
        "state": RunState.FAILED,
        "created_at": 1_700_000_001.5,
        "input_text": "hello\nworld",
        "started_at": 1_700_000_002.25,
        "finished_at": 1_700_000_003.0,
        "usage": FULL_USAGE,
        "error": RunError("PROVIDER_ERROR", "boom"),
        "stop_reason": "end_turn",
    }
    fields.update(overrides)
    return Run(**fields)  # type: ignore[arg-type]


FULL_MESSAGE = Message(
    role=Role.ASSISTANT,
    text="answer \U0001f600 and a lone surrogate \ud83d",
    reasoning="thinking…",
    reasoning_signature="sig==",
    tool_calls=(ToolCall("c1", "read_file", '{"path": "a"}'), ToolCall("c2", "ls", "{}")),
    tool_call_id="c0",
    tool_name="prev",
    is_error=True,
    stop_reason=StopReason.TOOL_USE,
    incomplete=True,
)


def entry(
    worker_id: str = "w1", index: int = 0, message: Message = FULL_MESSAGE
) -> TranscriptEntry:
    return TranscriptEntry(worker_id, index, "r1", 1_700_000_004.75, message)


def all_payloads() -> list[Payload]:
    """One of every payload type with every field set, then the defaults-only variants."""
    return [
        WorkerCreated(worker()),
        WorkerStateChanged(WorkerState.IDLE, WorkerState.RUNNING),
        RunQueued(run(state=RunState.QUEUED, error=None)),
        RunStarted(run(state=RunState.RUNNING)),
        InputCommitted(entry(message=Message(Role.USER, "hi"))),
        TextDelta("tok \x00 \u2028 \ud800"),
        ReasoningDelta("hmm"),
        ToolCallStarted("c1", "read_file", '{"path": "a"}'),
        ToolCallFinished("c1", "read_file", "contents", True),
        MessageCommitted(entry(index=1)),
        UsageReported(FULL_USAGE),
        PartialDiscarded("stream reset"),
        RunFinished(run()),
        WorkerStopped("deleted"),
        WorkerDeleted(),
        Diagnostic(DiagnosticLevel.WARNING, "CODE", "msg", 1.5, "w1", "r1"),
        # defaults / zero values
        WorkerCreated(Worker("w2", RUNTIME_ID, WorkerState.IDLE, "echo")),
        RunFinished(Run("r2", "w2", RunState.COMPLETED, 0.0)),
        MessageCommitted(entry(message=Message(Role.TOOL))),
        UsageReported(Usage()),
        TextDelta(""),
        WorkerStopped(),
        Diagnostic(DiagnosticLevel.INFO, "", ""),
    ]


def event(seq: int, worker_id: str = "w1", payload: Payload | None = None, **kw: object) -> Event:
    time = kw.get("time", 1_700_000_000.0 + seq)
    run_id = kw.get("run_id", "r1")
    return Event(seq, float(time), worker_id, str(run_id), payload or TextDelta(f"t{seq}"))  # type: ignore[arg-type]


def seqs(events: Sequence[Event]) -> list[int]:
    return [e.seq for e in events]


class StoreFactory(Protocol):
    def __call__(
        self, *, retention_events: int = ..., retention_seconds: float = ...
    ) -> Awaitable[Store]: ...
