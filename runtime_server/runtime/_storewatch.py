"""What the Runtime does when its store cannot write (a full disk, an I/O error, a damaged file).

The store commits in the background and reports failures on the loop (``FailureListener``). A
failed write discards every batch that was not yet committed — none of them was acknowledged —
and the Runtime's memory, which runs ahead of the store (state changes are applied when a batch
is written, acknowledged when it commits), is then *rolled back to what is committed*, the same
way a restart would rebuild it:

1. at once: the event log fails every caller waiting for a commit (each gets STORE_FAILURE,
   meaning "not done"), drops the uncommitted events and rewinds its next seq to the committed
   seq + 1 (no published seq is reused, no hole is left); every call that would change state is
   refused with STORE_FAILURE before it changes anything; an ERROR diagnostic is recorded and the
   store state (GetRuntime) becomes FAILING, which the gRPC layer turns into health NOT_SERVING;
2. active runs are interrupted (their further events are not written) and the queues dropped;
3. the committed state is read back from the store and replaces the Runtime's memory;
4. the store resumes: the restart recovery writes the runs that were active or queued as
   INTERRUPTED, plus a probe row. The store's writer retries with capped exponential backoff
   (and only with some free space on the filesystem) until that commits — so writes resume by
   themselves once the disk has room again; until then the cycle repeats (a failed attempt
   discards its batch like the first);
5. committed: the store state is OK again, health SERVING, an INFO diagnostic says so.

A damaged file (StoreCorrupt) is not retried: memory goes back to what the file holds (if it can
still be read), and the state stays DAMAGED (NOT_SERVING, changes refused) until an operator
restarts the server. The start-up checks refuse the file if they can see the damage; a damaged
row they cannot see answers STORE_FAILURE again when it is read.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime_server import errors
from runtime_server.model import DiagnosticLevel, RunState, now
from runtime_server.runtime._settle import LOST
from runtime_server.store import PutMeta, StoreCorrupt

if TYPE_CHECKING:
    from runtime_server.runtime._core import RuntimeCore

log = logging.getLogger(__name__)

_RELOAD_RETRY_MIN = 0.1  # seconds between attempts to read the committed state back, doubling
_RELOAD_RETRY_MAX = 2.0


class StoreState(enum.Enum):
    OK = "OK"  # writes commit
    FAILING = "FAILING"  # writes fail; changes are refused; the store retries with backoff
    DAMAGED = "DAMAGED"  # the file is damaged: nothing more is written until a restart


StoreStateListener = Callable[[StoreState], None]


class StoreWatch:
    """The Runtime's view of its store's health, and the roll-back-and-resume task."""

    def __init__(self, runtime: RuntimeCore) -> None:
        self._rt = runtime
        self.state = StoreState.OK
        self.error = ""
        self.failures = 0  # failure episodes since start
        self._reports = 0  # failure reports since start: an attempt that saw one more failed
        self._task: asyncio.Task[None] | None = None
        self._listeners: list[StoreStateListener] = []
        # Until memory is rolled back to what is committed (step 3 of the module doc): the
        # workers whose changes in flight the failure discarded, None when memory is committed.
        # Reads of them (of the whole Runtime: any) answer STORE_FAILURE meanwhile (_settle).
        self.discarded: set[str] | None = None

    def lost(self, worker_id: str) -> int:
        """``_settle.LOST`` if a read of ``worker_id`` (of the whole Runtime with "") could show
        a change the store discarded and memory is not rolled back yet; else 0."""
        discarded = self.discarded
        if discarded is None or (worker_id and worker_id not in discarded):
            return 0
        return LOST

    def add_listener(self, listener: StoreStateListener) -> None:
        self._listeners.append(listener)

    def check(self) -> None:
        """Refuse a change while writes fail, before anything is changed."""
        if self.state is not StoreState.OK:
            raise errors.StoreFailure(
                f"the store cannot write ({self.error}); nothing was changed",
                state=self.state.value,
            )

    def on_failure(self, error: errors.StoreFailure) -> None:
        """The store's failure listener (on the loop)."""
        rt = self._rt
        self._reports += 1
        log_ = rt._log
        if log_ is not None:
            # what memory shows beyond the committed seq is discarded: remember whose it is
            # before the log forgets (the whole Runtime's reads are refused whenever this is set)
            discarded = self.discarded if self.discarded is not None else set()
            committed = log_.committed_seq
            discarded.update(w for w, seq in log_.changed_seq.items() if seq > committed)
            if log_.unsettled_any() or discarded:
                self.discarded = discarded
            log_.fail(error)
        was = self.state
        self.state = StoreState.DAMAGED if isinstance(error, StoreCorrupt) else StoreState.FAILING
        self.error = error.message
        if was is StoreState.OK or self.state is not was:
            if was is StoreState.OK:
                self.failures += 1
            what = (
                "the store file is damaged: nothing more is written to it; restart the server "
                "(its start-up checks will refuse the file; see the README)"
                if self.state is StoreState.DAMAGED
                else "changes are refused with STORE_FAILURE and health is NOT_SERVING until "
                "writes succeed again (retried with backoff)"
            )
            rt._diagnose(DiagnosticLevel.ERROR, "STORE_FAILURE", f"{error.message}; {what}")
            self._notify()
        # Only a serving Runtime recovers: during start() the failure fails start() itself, and
        # close() is already on its way out.
        if rt.started and not rt.closing and self._task is None:
            self._task = asyncio.create_task(self._recover(), name="store-recovery")

    def reported(self, exc: BaseException) -> bool:
        """True for a store failure already reported (the diagnostic, the log): shutting down
        while the store fails says so once, in close(), instead of once per step."""
        return isinstance(exc, errors.StoreFailure) and self.state is not StoreState.OK

    async def close(self) -> None:
        if self.state is not StoreState.OK:
            log.warning(
                "shutting down while the store is %s: nothing after the last acknowledged "
                "change was written (%s)",
                self.state.value,
                self.error,
            )
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def _notify(self) -> None:
        for listener in self._listeners:
            try:
                listener(self.state)
            except Exception:  # a listener's bug must not stop the recovery
                log.exception("store state listener failed")

    async def _recover(self) -> None:
        rt = self._rt
        delay = _RELOAD_RETRY_MIN
        attempts = 0
        try:
            while self.state is not StoreState.OK:
                attempts += 1
                reports = self._reports
                await self._quiesce()
                try:
                    stored = await rt._store.reload()
                except errors.StoreFailure as exc:
                    if self.state is StoreState.DAMAGED or isinstance(exc, StoreCorrupt):
                        return  # memory stays as it is; nothing more is written
                    log.warning("store: cannot read the committed state back: %s", exc.message)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RELOAD_RETRY_MAX)
                    continue
                rt._reset_state()
                tails = rt._load(stored)
                self.discarded = None  # memory is what is committed: reads answer again
                if self.state is StoreState.DAMAGED:
                    return  # memory is what the file has; it is not written to again
                try:
                    rt._store.resume()
                except errors.StoreFailure:
                    return  # damaged (or closed): stays refused
                log_ = rt._require_log()
                log_.resume()
                rt._recover(tails, why="the store failed", diagnose=False)
                # The probe: something is written even when nothing needed recovering, so OK
                # means a write really committed. The writer backs off before each retry.
                log_.append("", "", [], [PutMeta("store.resumed_at", now())])
                try:
                    await rt._store.flush()
                except errors.StoreFailure:
                    continue  # reported through on_failure: discarded again; next attempt
                if self._reports != reports or log_.failure is not None:
                    continue  # a failure was reported after the probe committed: not yet
                self.state, self.error = StoreState.OK, ""
                rt._diagnose(
                    DiagnosticLevel.INFO,
                    "STORE_RECOVERED",
                    f"writes resumed after {attempts} attempt(s); memory was rolled back to the "
                    f"committed state (the event log continues after seq {log_.committed_seq}); "
                    "runs that were active or queued are INTERRUPTED",
                )
                self._notify()
        finally:
            if self._task is asyncio.current_task():
                self._task = None

    async def _quiesce(self) -> None:
        """Stop everything that would change state: runs end (nothing they emit is written while
        the log is failed), queues go, and stops in progress finish (they fail)."""
        rt = self._rt
        for host in rt._hosts.values():
            host.queue.clear()
            host.cancel_active(RunState.INTERRUPTED, "the store failed")
        pending = [t for host in rt._hosts.values() for t in host.pending_tasks()]
        if pending:
            await asyncio.wait(pending)
            for t in pending:  # their callers got the error; here it is only marked as seen
                if not t.cancelled():
                    t.exception()
