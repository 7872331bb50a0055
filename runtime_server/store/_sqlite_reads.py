"""The SQLite store's on-demand reads (transcripts, run inputs) and the open-time transcript
summary, kept beside ``_sqlite`` so the Runtime never has to hold a whole transcript in memory.

Run inputs live in their own table, ``run_inputs``, created with ``CREATE TABLE IF NOT EXISTS`` on
every open (so a v1 file made before it gains it; no schema version change): a run's record is
rewritten without its text once the run has started (the Runtime keeps runs as metadata only),
and the text must survive that. For runs written before the table existed, the text is read from
the run record's body.
"""

from __future__ import annotations

import sqlite3

from engine import Role
from runtime_server.model import Run, TranscriptEntry
from runtime_server.store import _codec as codec

RUN_INPUTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS run_inputs (run_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL,"
    " text TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS run_inputs_by_worker ON run_inputs (worker_id)",
)


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in RUN_INPUTS_SCHEMA:
        conn.execute(statement)


def put_run_input(conn: sqlite3.Connection, run: Run) -> None:
    if run.input_text:
        conn.execute(
            "INSERT OR REPLACE INTO run_inputs (run_id, worker_id, text) VALUES (?, ?, ?)",
            (run.run_id, run.worker_id, run.input_text),
        )


def delete_run_inputs(conn: sqlite3.Connection, worker_id: str) -> None:
    conn.execute("DELETE FROM run_inputs WHERE worker_id = ?", (worker_id,))


def _entry(worker_id: str, row: tuple[int, str, float, bytes]) -> TranscriptEntry:
    idx, run_id, created_at, body = row
    return TranscriptEntry(
        worker_id=worker_id,
        index=idx,
        run_id=run_id,
        created_at=created_at,
        message=codec.decode_message(body),
    )


def load_transcript_summary(
    conn: sqlite3.Connection,
) -> tuple[dict[str, int], dict[str, list[TranscriptEntry]]]:
    """Each worker's transcript length and open tail (its entries from the last non-tool message
    on). Reads the primary-key index for the lengths and, per worker, entries newest first only
    until the first non-tool message: the cost is the number of workers, not the history."""
    lengths = {
        wid: int(top) + 1
        for wid, top in conn.execute(
            "SELECT worker_id, max(idx) FROM transcript GROUP BY worker_id"
        )
    }
    tails: dict[str, list[TranscriptEntry]] = {}
    for wid in lengths:
        tail: list[TranscriptEntry] = []
        for row in conn.execute(
            "SELECT idx, run_id, created_at, body FROM transcript WHERE worker_id = ?"
            " ORDER BY idx DESC",
            (wid,),
        ):
            entry = _entry(wid, row)
            tail.append(entry)
            if entry.message.role is not Role.TOOL:
                break
        tail.reverse()
        tails[wid] = tail
    return lengths, tails


def read_transcript(
    conn: sqlite3.Connection, worker_id: str, start: int, limit: int
) -> list[TranscriptEntry]:
    rows = conn.execute(
        "SELECT idx, run_id, created_at, body FROM transcript"
        " WHERE worker_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
        (worker_id, start, limit),
    )
    return [_entry(worker_id, row) for row in rows]


def read_run_input(conn: sqlite3.Connection, run_id: str) -> str | None:
    row = conn.execute("SELECT text FROM run_inputs WHERE run_id = ?", (run_id,)).fetchone()
    if row is not None:
        return str(row[0])
    row = conn.execute("SELECT body FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else codec.decode_run(row[0]).input_text
