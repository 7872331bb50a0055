"""SQLite: each transcript entry's ``seq`` (the event that committed it), kept in a table of its
own so that entries read back after a restart carry it too (``TranscriptEntry.seq``; see
``runtime_server.runtime._transcript_seq``).

A separate table, not a column: the ``transcript`` table is part of schema version 1 and files of
that version must open unchanged; this table is created on every open (``IF NOT EXISTS``), so a
file written before it existed gains it, and its older entries read back with seq 0 ("not
known"), as the model documents. Rows are written with the entry in the same transaction and
deleted with the worker.
"""

from __future__ import annotations

from runtime_server.model import TranscriptEntry

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS transcript_seq (worker_id TEXT NOT NULL, idx INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, PRIMARY KEY (worker_id, idx)) WITHOUT ROWID"
)

# The transcript columns _sqlite_reads decodes, plus the seq (NULL when not known).
SELECT = (
    "SELECT t.idx, t.run_id, t.created_at, t.body, s.seq FROM transcript AS t"
    " LEFT JOIN transcript_seq AS s ON s.worker_id = t.worker_id AND s.idx = t.idx"
)


PUT = "INSERT OR REPLACE INTO transcript_seq (worker_id, idx, seq) VALUES (?, ?, ?)"
DELETE = "DELETE FROM transcript_seq WHERE worker_id = ?"


def row(entry: TranscriptEntry) -> tuple[str, int, int] | None:
    """:data:`PUT`'s parameters for ``entry`` (None: its seq is not known)."""
    return (entry.worker_id, entry.index, entry.seq) if entry.seq else None
