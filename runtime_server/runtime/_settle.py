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

While the store is failing the wait is skipped, and a store failure during the wait ends it: reads
never wait for a store that may not come back (the Runtime then rolls its memory back to what is
committed, see _storewatch; GetRuntime reports the store's state meanwhile).

Returning the answer taken *before* the wait (not one read again after it) matters: anything
appended during the wait is not covered by it, and one read again could show that instead.
"""

from __future__ import annotations

import contextlib

from runtime_server import errors
from runtime_server.runtime._eventlog import EventLog


async def settle(log: EventLog | None, seq: int, store_ok: bool) -> None:
    """Wait until ``seq`` is committed (see the module doc): at once for 0 or a committed seq,
    skipped while the store is failing; a store failure ends the wait."""
    if log is None or not seq or not store_ok:
        return
    with contextlib.suppress(errors.StoreFailure):
        await log.wait_committed(seq)
