"""The SQLite store's event counters in ``meta`` (``last_seq``, ``event_count``): written now and
then, not in every transaction, and completed from the events table at open.

Why: ``meta`` is a b-tree of its own, so rewriting its two rows in a transaction adds one 4 KB
page to the WAL (a frame: two ``pwrite`` calls and a checksum over the page) and one statement
(two GIL hand-offs) to every commit — one page of the ~12-17 a typical transaction writes.

The invariant that makes the rows safe to leave behind: **``meta.event_count`` is the number of
events with ``seq <= meta.last_seq``**, in every committed state.

* A transaction that inserts events without touching ``meta`` adds events above
  ``meta.last_seq`` only (seqs increase), so it keeps the invariant.
* Every transaction that writes the rows writes both, with the writer's exact values after it
  (all its events are at or below that ``last_seq``): a commit every :data:`COUNTERS_EVERY`
  events, each retention transaction (the only place events are deleted, always together with
  the count), the skip of an accepted loss (``_sqlite_schema.prepare``), and a clean close (so a
  closed file's ``meta`` is exact, as it always was).

So at open (and after a failure, ``reload()``), :func:`committed` recovers the exact values from
the last write plus the events after it: ``last_seq`` is the larger of ``meta.last_seq`` (above
the newest event after an accepted loss) and the newest event (retention never deletes it), and
the count adds the events above ``meta.last_seq`` — an index range of at most
``COUNTERS_EVERY`` plus one transaction's events, never a scan of the log.

Nothing about what a client sees changes: seqs are reported after their commit and the seq
high-water mark (``_integrity``) is written as before; the lost-WAL check compares the mark with
the recovered ``last_seq``, which comes from the events themselves.
"""

from __future__ import annotations

import sqlite3
from typing import Any

# Events committed between two writes of the counters (bounds the range counted at open).
COUNTERS_EVERY = 1000

# Both counters in one statement: one step (and one GIL hand-off) less than two.
UPDATE = (
    "UPDATE meta SET value = CASE key WHEN 'last_seq' THEN ?1 ELSE ?2 END"
    " WHERE key IN ('last_seq', 'event_count')"
)


def committed(conn: sqlite3.Connection, meta: dict[str, Any]) -> tuple[int, int]:
    """The committed ``(last_seq, event_count)``: ``meta``'s values completed by the events
    committed after the counters were last written (see the module doc)."""
    meta_last = int(meta["last_seq"])
    count = int(meta["event_count"])
    newest, after = conn.execute(
        "SELECT max(seq), count(*) FROM events WHERE seq > ?", (meta_last,)
    ).fetchone()
    return max(meta_last, int(newest or 0)), count + int(after)


def write(conn: sqlite3.Connection, last_seq: int, event_count: int) -> None:
    conn.execute(UPDATE, (last_seq, event_count))
