"""Recovery: the Runtime's memory rebuilt from what its store committed — at start, and after a
store failure rolled memory back (see ``_storewatch``).

1. :func:`load` — workers (as hosts), runs, idempotency keys and the deleted workers' totals, as
   stored; transcripts as lengths plus the open tails.
2. :func:`recover` — what a previous process (or the failed store) left unfinished: tool calls
   without a result get a synthetic one (as a cancelled run's do), so the transcript is valid for
   the next turn; runs left QUEUED or RUNNING become INTERRUPTED (keeping the tokens they spent);
   workers left RUNNING become IDLE.
3. :func:`reclaim` — the workspace claims follow the workers just loaded.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import replace

import engine
from runtime_server.model import (
    DiagnosticLevel,
    MessageCommitted,
    RunError,
    RunFinished,
    RunState,
    ToolCallFinished,
    TranscriptEntry,
    Worker,
    WorkerState,
    WorkerStateChanged,
    WorkerStopped,
    now,
)
from runtime_server.runtime._eventlog import EventLog
from runtime_server.runtime._host import Diagnose, WorkerHost
from runtime_server.runtime._lifetime import load_deleted
from runtime_server.runtime._profiles import Config
from runtime_server.runtime._runbook import RunBook
from runtime_server.runtime._workspaces import Workspaces
from runtime_server.store import AppendTranscript, PutRequestKey, PutRun, PutWorker, StoredState

Remember = Callable[["OrderedDict[str, PutRequestKey]", PutRequestKey, int], None]


def load(
    stored: StoredState,
    hosts: dict[str, WorkerHost],
    book: RunBook,
    create_keys: OrderedDict[str, PutRequestKey],
    new_host: Callable[[Worker, int], WorkerHost],
    remember: Remember,
    key_capacity: tuple[int, int],
) -> Mapping[str, list[TranscriptEntry]]:
    """Fill empty ``hosts``, ``book`` and ``create_keys`` from ``stored``; returns the open
    transcript tails (for :func:`recover`). ``key_capacity``: (create, per worker)."""
    lengths = stored.transcript_lengths
    for worker in stored.workers:
        hosts[worker.worker_id] = new_host(worker, lengths.get(worker.worker_id, 0))
    for key in stored.request_keys:  # oldest first: the same bounded LRU as before the stop
        if key.scope == "create":
            remember(create_keys, key, key_capacity[0])
        elif key.scope in hosts:
            remember(hosts[key.scope].request_keys, key, key_capacity[1])
    for run in sorted(stored.runs, key=lambda r: (r.finished_at or r.created_at, r.run_id)):
        book.load(run)
        if run.worker_id in hosts:
            hosts[run.worker_id].run_count += 1
    for host in hosts.values():
        book.usage = book.usage + host.worker.usage
    book.deleted = load_deleted(stored.meta)
    return stored.transcripts


def recover(
    log_: EventLog,
    hosts: dict[str, WorkerHost],
    book: RunBook,
    tails: Mapping[str, list[TranscriptEntry]],
    why: str,
) -> int:
    """Close what was left open (see the module doc); returns how many runs were interrupted."""
    for wid, host in hosts.items():
        close_dangling_calls(log_, host, tails.get(wid, []))
    interrupted = 0
    for run in list(book.runs.values()):
        if run.state.terminal:
            continue
        interrupted += 1
        where = "queued" if run.state is RunState.QUEUED else "active"
        owner = hosts.get(run.worker_id)
        if owner is not None and run.usage != engine.Usage():
            # Tokens the run spent before the crash (saved with each UsageReported) count.
            owner.worker = replace(owner.worker, usage=owner.worker.usage + run.usage)
            book.usage = book.usage + run.usage
            log_.append(run.worker_id, "", [], [PutWorker(owner.worker)])
        done = replace(
            run,
            state=RunState.INTERRUPTED,
            finished_at=now(),
            error=RunError("INTERRUPTED", f"{why} while this run was {where}"),
            input_text="",
        )
        book.runs[run.run_id] = done
        book.retire(done)
        log_.append(run.worker_id, run.run_id, [RunFinished(done)], [PutRun(done)])
    for host in hosts.values():
        w = host.worker
        if w.state is WorkerState.RUNNING or w.active_run_id:
            state = WorkerState.STOPPED if w.state is WorkerState.STOPPED else WorkerState.IDLE
            idle = replace(w, state=state, active_run_id="")
            host.worker = idle
            changed = [WorkerStateChanged(w.state, state)] if state is not w.state else []
            log_.append(w.worker_id, "", changed, [PutWorker(idle)])
    return interrupted


def close_dangling_calls(log_: EventLog, host: WorkerHost, tail: list[TranscriptEntry]) -> None:
    """Tool calls in the open tail of a transcript without a result get an error result."""
    calls: list[tuple[TranscriptEntry, engine.ToolCall]] = []
    for entry in tail:  # the open tail (from the last non-tool message): all that matters
        message = entry.message  # only the tail can be open: what follows a call closes it
        if message.role is not engine.Role.TOOL:
            calls = [(entry, call) for call in message.tool_calls]
        else:
            calls = [(e, c) for e, c in calls if c.call_id != message.tool_call_id]
    wid = host.worker.worker_id
    for entry, call in calls:
        text = "interrupted: the runtime stopped before this tool call finished"
        result = engine.Message(
            engine.Role.TOOL, text=text, tool_call_id=call.call_id, tool_name=call.name,
            is_error=True,
        )  # fmt: skip
        closing = TranscriptEntry(
            worker_id=wid, index=len(host.transcript), run_id=entry.run_id, created_at=now(),
            message=result,
        )  # fmt: skip
        host.transcript.append(closing)
        log_.append(
            wid,
            entry.run_id,
            [ToolCallFinished(call.call_id, call.name, text, True), MessageCommitted(closing)],
            [AppendTranscript(closing)],
        )


def reclaim(
    log_: EventLog,
    hosts: dict[str, WorkerHost],
    workspaces: Workspaces,
    config: Config,
    diagnose: Diagnose,
) -> None:
    """Rebuild the allocation manager's claims from the live workers, in creation order; a
    worker whose paths now conflict or fall outside the host policy (a symlink retargeted while
    the runtime was down) is stopped with a diagnostic, never left sharing a path read-write or
    reaching one the host does not allow."""
    for host in hosts.values():
        w = host.worker
        if w.tools is None:  # stored before effective tools were recorded
            host.worker = replace(w, tools=workspaces.tools_of(config.profiles.get(w.profile), w))
    losers = workspaces.rebuild([h.worker for h in hosts.values()])
    for worker_id, refusal in losers:
        host = hosts[worker_id]
        previous = host.worker.state
        host.worker = replace(host.worker, state=WorkerState.STOPPED, active_run_id="")
        what = "conflict" if refusal.reason == "WORKSPACE_CONFLICT" else "not allowed"
        reason = f"workspace {what} at start: {refusal.message}"
        log_.append(
            worker_id,
            "",
            [WorkerStateChanged(previous, WorkerState.STOPPED), WorkerStopped(reason)],
            [PutWorker(host.worker)],
        )
        diagnose(DiagnosticLevel.ERROR, refusal.reason, reason, worker_id)
