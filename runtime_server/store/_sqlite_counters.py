"""The SQLite store's event counters in ``meta`` (``last_seq``, ``event_count``): written now and
then, not in every transaction, and completed from the event log at open.

Why: ``meta`` is a b-tree of its own, so rewriting its two rows in a transaction adds one 4 KB
page to the WAL (a frame: two ``pwrite`` calls and a checksum over the page) and one statement
(two GIL hand-offs) to every commit — one page of the ~12-17 a typical transaction writes.

The invariant that makes the rows safe to leave behind: **``meta.event_count`` is the number of
readable events (at or above the retention floor, ``_sqlite_chunks``) with ``seq <=
meta.last_seq``**, in every committed state.

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
the count adds the events above ``meta.last_seq`` — a range of the ``event_chunks`` rows
written after it (their ``events`` column: at most ``COUNTERS_EVERY`` plus one transaction's
events), never a scan of the log. (Those rows hold no event below the retention floor: retention
writes the counters whenever it moves the floor, so every row above ``meta.last_seq`` is newer
than the floor.)

Nothing about what a client sees changes: seqs are reported after their commit and the seq
high-water mark (``_integrity``) is written as before; the lost-WAL check compares the mark with
the recovered ``last_seq``, which comes from the events themselves.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from runtime_server.store import _sqlite_chunks as chunks

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
    # (a version-1 file is read at start-up before its migration: events were rows then)
    version = int(meta.get("schema_version") or 2)
    if version < 2:
        newest, after = conn.execute(
            "SELECT max(seq), count(*) FROM events WHERE seq > ?", (meta_last,)
        ).fetchone()
        return max(meta_last, int(newest or 0)), count + int(after)
    newest, after = conn.execute(
        "SELECT max(last_seq), total(events) FROM event_chunks WHERE last_seq > ?", (meta_last,)
    ).fetchone()
    # A row the counters' seq falls inside (never written so by this store, whose counters
    # follow whole transactions; but a file's rows are not to be trusted that far): only its
    # events above meta.last_seq count.
    for (body,) in conn.execute(
        "SELECT body FROM event_chunks WHERE last_seq > ? AND tx_first <= ?", (meta_last, meta_last)
    ):
        after -= sum(1 for seq in chunks.seqs(body) if seq <= meta_last)
    return max(meta_last, int(newest or 0)), count + int(after)


def write(conn: sqlite3.Connection, last_seq: int, event_count: int) -> None:
    conn.execute(UPDATE, (last_seq, event_count))
