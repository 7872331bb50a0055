"""One worker inside the Runtime: :class:`WorkerHost` owns the worker's record, its transcript
window, its queue of inputs, its active run, the task executing that run, and why that task was
cancelled (the way temporal's ``_RunningActivity`` owns its task and its cancel reason).

The Runtime decides *whether* something may happen (validation, idempotency, limits, the memory
budget); the host makes it happen for its worker: start or queue a run (:meth:`submit`), execute
it, finish it exactly once and start the next queued one, cancel it (recording why before
cancelling), drop its queue, stop the worker. Nothing outside changes a host's run state.

Every method that decides is synchronous — no ``await`` between a check and the change it guards
— so concurrent callers cannot both win (the single-flight gate is ``active is None``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import engine
from runtime_server import errors, logcontext
from runtime_server.model import (
    BusyPolicy,
    DiagnosticLevel,
    InputCommitted,
    Payload,
    Run,
    RunError,
    RunFinished,
    RunStarted,
    RunState,
    TranscriptEntry,
    Worker,
    WorkerState,
    WorkerStateChanged,
    WorkerStopped,
    now,
)
from runtime_server.runtime._budget import InputQueue
from runtime_server.runtime._context import run_history
from runtime_server.runtime._eventlog import EventLog
from runtime_server.runtime._evolve import evolve
from runtime_server.runtime._profiles import Profile
from runtime_server.runtime._providers import Providers, ToolsFactory
from runtime_server.runtime._runbook import RunBook
from runtime_server.runtime._steps import held_steps
from runtime_server.runtime._transcripts import Transcripts, TranscriptWindow
from runtime_server.runtime._turns import event_mapper, turn_config
from runtime_server.store import AppendTranscript, Mutation, PutRequestKey, PutRun, PutWorker

log = logging.getLogger(__name__)

Diagnose = Callable[..., None]  # (level, code, message, worker_id="", run_id="")


@dataclass(eq=False, slots=True)
class HostContext:
    """What every host shares, given by the Runtime."""

    runs: RunBook
    transcripts: Transcripts
    providers: Providers
    tools_factory: ToolsFactory
    profile: Callable[[Worker], Profile | None]  # its snapshot, or the host's of its name
    diagnose: Diagnose
    release_claims: Callable[[str], None]
    serving: Callable[[], bool]  # whether a finished run may start the next queued one
    log: EventLog | None = None  # set by the Runtime's start()

    def require_log(self) -> EventLog:
        if self.log is None:
            raise errors.FailedPrecondition("the runtime is not started")
        return self.log


class WorkerHost:
    """A worker's record, queue, active run, run task and cancellation (see the module doc)."""

    __slots__ = (
        "_ctx",
        "active",
        "cancel_reason",
        "cancel_state",
        "queue",
        "request_keys",
        "run_count",
        "run_usage",
        "stop_task",
        "stopping",
        "task",
        "transcript",
        "worker",
    )

    def __init__(
        self, worker: Worker, transcript: TranscriptWindow, queue: InputQueue, ctx: HostContext
    ) -> None:
        self._ctx = ctx
        self.worker = worker
        # Its length and newest entries only; the rest is read from the store (see _transcripts).
        self.transcript = transcript
        self.queue = queue
        self.request_keys: OrderedDict[str, PutRequestKey] = OrderedDict()
        self.run_count = 0  # runs ever accepted (finished runs may be forgotten: max_retained_runs)
        self.active: Run | None = None
        self.task: asyncio.Task[None] | None = None
        self.run_usage = engine.Usage()  # of the active run, so far
        self.cancel_state: RunState | None = None  # why the task was cancelled, set before it
        self.cancel_reason = ""
        self.stopping = False
        self.stop_task: asyncio.Future[None] | None = None  # shared by concurrent StopWorkers

    def snapshot(self) -> Worker:
        """The worker as callers see it (with its queue length)."""
        w = self.worker
        if w.queued_runs != len(self.queue):
            w = evolve(w, queued_runs=len(self.queue))
        return w

    def usage_so_far(self) -> engine.Usage:
        """The worker's usage including what its active run has spent so far."""
        if self.active is None:
            return self.worker.usage
        return self.worker.usage + self.run_usage

    def check_accepting(self) -> None:
        if self.worker.state is WorkerState.STOPPED or self.stopping:
            raise errors.WorkerStopped(self.worker.worker_id)

    # --- runs ---

    def submit(
        self, run: Run, busy_policy: BusyPolicy, payloads: list[Payload], mutations: list[Mutation]
    ) -> tuple[Run, int]:
        """Start ``run`` (the worker is idle), or queue it (at the front for INTERRUPT, which
        then cancels the active run); commit the batch. Returns the run as accepted and the seq
        of the batch's last event. The caller checked the busy policy and the queue bound."""
        log_ = self._ctx.require_log()
        start = self.active is None
        accepted = run
        if start:
            accepted = self._begin(run, payloads, mutations)
        elif busy_policy is BusyPolicy.INTERRUPT:
            self.queue.appendleft(run)
        else:
            self.queue.append(run)
        events = log_.append(self.worker.worker_id, run.run_id, payloads, mutations)
        if start:
            self._spawn(accepted)
        elif busy_policy is BusyPolicy.INTERRUPT:
            self.cancel_active(RunState.CANCELLED, "interrupted by a new input")
        return accepted, events[-1].seq

    def _begin(self, run: Run, payloads: list[Payload], mutations: list[Mutation]) -> Run:
        """Make ``run`` the active run: adds its start events/mutations to the batch."""
        # Its text goes into the transcript (and stays in the store's record of the run): the
        # run itself is kept as metadata only from now on.
        t = now()
        started = evolve(run, state=RunState.RUNNING, started_at=t, input_text="")
        self._ctx.runs.runs[run.run_id] = started
        entry = TranscriptEntry(
            worker_id=self.worker.worker_id,
            index=len(self.transcript),
            run_id=run.run_id,
            message=engine.Message(engine.Role.USER, text=run.input_text),
            created_at=t,
        )
        self.transcript.append(entry)
        self.active = started
        self.run_usage = engine.Usage()
        self.cancel_state = None
        self.cancel_reason = ""
        previous = self.worker.state
        self.worker = evolve(self.worker, state=WorkerState.RUNNING, active_run_id=run.run_id)
        payloads += [RunStarted(started), InputCommitted(entry)]
        mutations += [PutRun(started), AppendTranscript(entry), PutWorker(self.worker)]
        if previous is not WorkerState.RUNNING:
            payloads.append(WorkerStateChanged(previous, WorkerState.RUNNING))
        return started

    def _spawn(self, run: Run) -> None:
        # each step's events go to the store as one batch (_steps)
        coro = held_steps(self._execute(run), self._ctx.require_log())
        task = asyncio.create_task(coro, name=f"run-{run.run_id}")
        self.task = task
        # If the task is cancelled before it ever runs, its body (and its finally) never executes:
        # the done-callback still finishes the run, exactly once.
        task.add_done_callback(lambda _t: self.finish(run.run_id))

    async def _execute(self, run: Run) -> None:
        ctx = self._ctx
        worker = self.worker
        # this task's own context (a copy): its log lines name the run, not the call that began it
        logcontext.worker_id.set(run.worker_id)
        logcontext.run_id.set(run.run_id)
        logcontext.request_id.set("")
        logcontext.rpc.set("")
        profile = ctx.profile(worker)
        state, error, stop_reason = RunState.COMPLETED, None, ""
        try:
            if profile is None:
                raise engine.ConfigurationError(f"profile {worker.profile!r} no longer exists")
            provider = ctx.providers.get(profile)
            tools = ctx.tools_factory(profile, worker)
            turn = turn_config(profile)
            log_ = ctx.require_log()
            # the context policy's window only (see _context), a new list: run_turn appends to it
            history = await run_history(
                ctx.transcripts,
                self.transcript,
                profile.context,
                lambda: log_.wait_committed(log_.last_assigned_seq),
            )
            emit = event_mapper(self, ctx, run.run_id, tools)
            result = await engine.run_turn(
                provider, turn, history, emit=emit, tools=tools, windowed=profile.context.bounded
            )
            stop_reason = result.stop_reason.value
            if result.stop_reason is engine.StopReason.LIMIT_REACHED:
                state = RunState.FAILED
                error = RunError(
                    "LIMIT_REACHED",
                    f"the run reached its limit of {profile.max_tool_rounds} tool rounds",
                )
        except asyncio.CancelledError:
            if self.cancel_state is None:  # not ours (loop shutdown): record, then let it through
                self.finish(run.run_id, RunState.INTERRUPTED, "cancelled from outside")
                raise
            state, error = self.cancel_state, None
        except engine.EngineError as exc:
            state, error = RunState.FAILED, RunError(exc.code, exc.message)
        except Exception as exc:  # a bug must fail the run, never leave it RUNNING
            log.exception("run %s failed unexpectedly", run.run_id)
            state, error = RunState.FAILED, RunError("INTERNAL", f"{type(exc).__name__}: {exc}")
            ctx.diagnose(
                DiagnosticLevel.ERROR, "RUN_CRASHED", error.message, run.worker_id, run.run_id
            )
        self.finish(run.run_id, state, "", error, stop_reason)

    def finish(
        self,
        run_id: str,
        state: RunState | None = None,
        reason: str = "",
        error: RunError | None = None,
        stop_reason: str = "",
    ) -> None:
        """End the active run ``run_id`` (exactly once) and start the next queued input, if any."""
        ctx = self._ctx
        log_ = ctx.log
        active = self.active
        if active is None or active.run_id != run_id or log_ is None:
            return
        if state is None:  # from the done-callback: the body never ran to its end
            state = self.cancel_state or RunState.INTERRUPTED
        if error is None and state in (RunState.CANCELLED, RunState.INTERRUPTED):
            error = RunError(state.value, self.cancel_reason or reason or state.value.lower())
        done = evolve(
            active,
            state=state,
            finished_at=now(),
            usage=self.run_usage,
            error=error,
            stop_reason=stop_reason,
        )
        ctx.runs.end(done)
        ctx.runs.usage = ctx.runs.usage + self.run_usage
        ctx.transcripts.release(self.worker.worker_id)
        self.active = None
        self.task = None
        usage = self.worker.usage + self.run_usage
        payloads: list[Payload] = [RunFinished(done)]
        mutations: list[Mutation] = [PutRun(done)]
        nxt = None
        going_on = bool(self.queue) and not self.stopping and ctx.serving()
        if going_on or self.stopping:
            worker = evolve(self.worker, usage=usage, active_run_id="")
        else:  # idle now: one copy of the record, not two
            worker = evolve(self.worker, usage=usage, active_run_id="", state=WorkerState.IDLE)
        self.worker = worker
        if going_on:
            # The next run's start events carry its own run_id, so they are a batch of their own
            # (the first one also records the worker's new usage with the run that produced it).
            log_.append(worker.worker_id, run_id, payloads, [*mutations, PutWorker(worker)])
            payloads, mutations = [], []
            nxt = self._begin(self.queue.popleft(), payloads, mutations)
            run_id = nxt.run_id
        elif not self.stopping:
            payloads.append(WorkerStateChanged(WorkerState.RUNNING, WorkerState.IDLE))
            mutations.append(PutWorker(worker))
        else:
            mutations.append(PutWorker(worker))
        log_.append(worker.worker_id, run_id, payloads, mutations)
        if nxt is not None:
            self._spawn(nxt)

    # --- cancellation ---

    def cancel_active(self, state: RunState, reason: str) -> None:
        """Cancel the active run's task, recording why first (its finish reads it)."""
        task = self.task
        if task is not None and not task.done() and self.cancel_state is None:
            self.cancel_state = state  # record why before cancelling
            self.cancel_reason = reason
            task.cancel()

    def cancel_queued(self, run: Run) -> tuple[Run, int]:
        """Cancel a queued run: it leaves the queue, finished CANCELLED. Returns it and the seq
        of its RunFinished."""
        log_ = self._ctx.require_log()
        with contextlib.suppress(ValueError):
            self.queue.remove(run)
        done = evolve(
            run,
            state=RunState.CANCELLED,
            finished_at=now(),
            error=RunError("CANCELLED", "cancelled by request"),
            input_text="",
        )
        self._ctx.runs.end(done)
        events = log_.append(run.worker_id, run.run_id, [RunFinished(done)], [PutRun(done)])
        return done, events[-1].seq

    def drop_queue(self, state: RunState, reason: str) -> None:
        """Finish every queued run as ``state`` (CANCELLED, INTERRUPTED) with ``reason``."""
        log_ = self._ctx.require_log()
        while self.queue:
            run = self.queue.popleft()
            done = evolve(
                run,
                state=state,
                finished_at=now(),
                error=RunError(state.value, reason),
                input_text="",
            )
            self._ctx.runs.end(done)
            log_.append(run.worker_id, run.run_id, [RunFinished(done)], [PutRun(done)])

    async def wait_task(self) -> None:
        """Wait until the active run's task (if any) is done."""
        task = self.task
        if task is not None and not task.done():
            await asyncio.wait([task])

    def pending_tasks(self) -> list[asyncio.Future[None]]:
        """The run task and stop task still running."""
        return [t for t in (self.task, self.stop_task) if t is not None and not t.done()]

    # --- stop ---

    async def stop(self, reason: str) -> None:
        """Cancel the active run, drop the queue, stop the worker for good; concurrent callers
        all return once the stop is committed (the shield lets it finish if a caller goes)."""
        if self.stop_task is None:
            if self.worker.state is WorkerState.STOPPED:  # stopped before a restart
                return
            self.stopping = True
            self.drop_queue(RunState.CANCELLED, "the worker was stopped")
            self.cancel_active(RunState.CANCELLED, "the worker was stopped")
            self.stop_task = asyncio.ensure_future(self._stop(reason))
        await asyncio.shield(self.stop_task)

    async def _stop(self, reason: str) -> None:
        log_ = self._ctx.require_log()
        await self.wait_task()
        previous = self.worker.state
        stopped = evolve(self.worker, state=WorkerState.STOPPED, active_run_id="")
        self.worker = stopped
        # The run is over (no tool can still write): the worker's paths are free again.
        self._ctx.release_claims(stopped.worker_id)
        events = log_.append(
            stopped.worker_id,
            "",
            [WorkerStateChanged(previous, WorkerState.STOPPED), WorkerStopped(reason)],
            [PutWorker(stopped)],
        )
        await log_.wait_committed(events[-1].seq)
