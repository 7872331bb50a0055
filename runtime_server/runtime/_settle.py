"""Reads answer only what is committed.

The Runtime's memory runs ahead of its store: a change is applied in memory when its batch is
appended to the event log and acknowledged once the store has committed it (with the memory store
both happen inside ``append``; with SQLite the commit comes a moment later, from the writer
thread). A read answered from memory in that moment could tell a caller something the store does
not hold yet — a worker IDLE with its usage, a run COMPLETED, a transcript entry, a worker created
or gone — and after a ``kill -9`` there the store comes back without it: the caller was told
something that then never happened (and a resume cursor past the committed seq would be reused).

The rule, for every read of the Runtime core (the gRPC servicers, the embedded handle and the
Backend all go through these reads):

1. take the answer from memory in one step (no ``await`` while it is built);
2. if what it shows may not be committed yet — the last batch appended for that worker
   (``EventLog.unsettled``), or for a read of the whole Runtime (counts, totals, lists, a
   NOT_FOUND) anything appended at all (``EventLog.unsettled_any``) — wait until that seq is
   committed, then return the answer taken in step 1. A NOT_FOUND is an answer too: it waits the
   same way, so a delete is reported only once it is committed;
3. nothing pending (always, on the memory store): answered at once, no allocation beyond the
   answer itself — the check is two dict/int reads.

A store failure during the wait ends it with STORE_FAILURE (never the answer taken in step 1):
the store discarded every batch it had not committed, so that answer may show changes that
never happened — a worker IDLE with the usage of a run the store then lost, a run COMPLETED
that comes back INTERRUPTED, a worker that is gone after all. The same holds for a read that
starts after the failure but before the Runtime has rolled its memory back to what is committed
(_storewatch): memory still shows what was discarded, so a read of a worker that had changes
in flight (of the whole Runtime: any change in flight) answers STORE_FAILURE until the roll-back
is done (``StoreWatch.lost``; such a read passes a negative seq here). A caller retries once the
store has recovered (GetRuntime's ``store_state``); nothing is lost by answering nothing.
(ListDiagnostics only for its own wait: the diagnostics ring is not rolled back, and the
failure's own ERROR diagnostic, never written while writes fail, is what an operator reads.)

While the store is failing *and* memory is back to what is committed, reads answer at once
without waiting: reads never wait for a store that may not come back (GetRuntime reports the
store's state meanwhile).

Returning the answer taken *before* the wait (not one read again after it) matters: anything
appended during the wait is not covered by it, and one read again could show that instead.
"""

from __future__ import annotations

from runtime_server import errors
from runtime_server.runtime._eventlog import EventLog
from runtime_server.store import StoreCorrupt

LOST = -1  # the seq a read "waits for" when what it would show was discarded (see the doc)


def read_failure(cause: errors.StoreFailure | None) -> errors.StoreFailure:
    """What a read answers when the store failed before its answer was committed."""
    why = f" ({cause.message})" if cause is not None else ""
    err = errors.StoreFailure(
        "the store failed before this answer was committed: it could show changes the store "
        f"discarded{why}; read again once the store has recovered (GetRuntime's store_state)",
        path=cause.path if cause is not None else "",
        state=(cause.state if cause is not None else "")
        or ("DAMAGED" if isinstance(cause, StoreCorrupt) else "FAILING"),
    )
    err.__cause__ = cause
    return err


async def settle(log: EventLog | None, seq: int, store_ok: bool) -> None:
    """Wait until ``seq`` is committed (see the module doc): at once for 0 or a committed seq;
    STORE_FAILURE for :data:`LOST` and when a store failure ends the wait; skipped while the
    store is failing (memory then holds only what is committed, or the recovery's own writes)."""
    if seq < 0:
        raise read_failure(log.failure if log is not None else None)
    if log is None or not seq or not store_ok:
        return
    try:
        await log.wait_committed(seq)
    except errors.StoreFailure as exc:
        raise read_failure(exc) from exc
