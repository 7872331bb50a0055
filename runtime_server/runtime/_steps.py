"""One store write per step of a run's task: :func:`held_steps` wraps the run's coroutine so that
every event the task appends during one step (from resuming it to its next suspension) goes to
the store as ONE batch, written when the step ends.

A run produces its events in bursts that are one synchronous stretch of its task: the last
stream chunk, the usage report, the committed message, RunFinished and the worker going idle all
come out of a single step. Written one ``append`` at a time that was a commit (and a commit
report, a publish pass, a size count, a trim, ...) per append: six store writes for a two-word
echo run, four of them in its last step (measured; the SQLite store also took each one into its
write queue separately). Held, the step's appends keep their seqs and their order and are
written together, as one atomic batch, when the step ends.

Nothing outside the task can see the difference. A step is synchronous: no other task, callback
or RPC runs until it ends, and it ends with the write — before the loop runs anything else — so
every reader still sees only committed events, in seq order, and nothing is published before it
is committed (the store reports the batch as one commit; :class:`EventLog` publishes then, as
for any batch). A step that waits for a commit of its own (``wait_committed``) suspends, which
ends the step and writes what it holds first, so the wait is answered as before.

The wrapper is the task's coroutine (asyncio accepts any :class:`collections.abc.Coroutine`): it
costs one Python call per step, and ``throw`` (cancellation) is held the same way, so a run that
is cancelled writes its partial answer and RunFinished in one batch too.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any, TypeVar

from runtime_server.runtime._eventlog import EventLog

T = TypeVar("T")


class _HeldSteps(Coroutine[Any, Any, T]):
    __slots__ = ("_coro", "_log")

    def __init__(self, coro: Coroutine[Any, Any, T], log: EventLog) -> None:
        self._coro = coro
        self._log = log

    def send(self, value: Any) -> Any:
        log = self._log
        log.hold()
        try:
            return self._coro.send(value)
        finally:
            log.release()

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        log = self._log
        log.hold()
        try:
            if val is None and tb is None:
                return self._coro.throw(typ)
            return self._coro.throw(typ, val, tb)
        finally:
            log.release()

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, T]:
        return self._coro.__await__()


def held_steps(coro: Coroutine[Any, Any, T], log: EventLog) -> Coroutine[Any, Any, T]:
    """``coro``, with the events of each of its steps written to ``log``'s store as one batch."""
    return _HeldSteps(coro, log)
