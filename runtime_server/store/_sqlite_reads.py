"""The SQLite store's reads: the committed state at open (:func:`load_state`, with the transcript
summary: the Runtime never has to hold a whole transcript in memory), events, diagnostics, and
the on-demand reads of transcripts and run inputs.

Run inputs live in their own table, ``run_inputs``, created with ``CREATE TABLE IF NOT EXISTS`` on
every open (so a v1 file made before it gains it; no schema version change): a run's record is
rewritten without its text once the run has started (the Runtime keeps runs as metadata only),
and the text must survive that. For runs written before the table existed, the text is read from
the run record's body.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from engine import Role
from runtime_server.model import Diagnostic, Event, Run, TranscriptEntry
from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_bundles as bundle_rows
from runtime_server.store import _sqlite_counters as counters
from runtime_server.store import _transcript_seqs as seqs
from runtime_server.store._protocol import PutRequestKey, StoredState

RUN_INPUTS_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS run_inputs (run_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL,"
    " text TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS run_inputs_by_worker ON run_inputs (worker_id)",
)


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in RUN_INPUTS_SCHEMA:
        conn.execute(statement)


PUT_RUN_INPUT = "INSERT OR REPLACE INTO run_inputs (run_id, worker_id, text) VALUES (?, ?, ?)"
DELETE_RUN_INPUTS = "DELETE FROM run_inputs WHERE worker_id = ?"


def run_input_row(run: Run) -> tuple[str, str, str | bytes] | None:
    """:data:`PUT_RUN_INPUT`'s parameters for ``run`` (None: it has no input text)."""
    text = run.input_text
    if not text:
        return None
    value: str | bytes = text
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            # A lone surrogate (the Runtime refuses them on input, but the store must not depend
            # on it): sqlite3 cannot bind such a str, and a failed transaction fails the whole
            # store. Kept as UTF-8 bytes with surrogatepass, as event bodies are.
            value = text.encode("utf-8", "surrogatepass")
    return (run.run_id, run.worker_id, value)


def _entry(worker_id: str, row: tuple[int, str, float, bytes, int | None]) -> TranscriptEntry:
    idx, run_id, created_at, body, seq = row
    return TranscriptEntry(
        worker_id=worker_id,
        index=idx,
        run_id=run_id,
        created_at=created_at,
        message=codec.decode_message(body),
        seq=seq or 0,
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
            seqs.SELECT + " WHERE t.worker_id = ? ORDER BY t.idx DESC",
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
        seqs.SELECT + " WHERE t.worker_id = ? AND t.idx >= ? ORDER BY t.idx LIMIT ?",
        (worker_id, start, limit),
    )
    return [_entry(worker_id, row) for row in rows]


def read_run_input(conn: sqlite3.Connection, run_id: str) -> str | None:
    row = conn.execute("SELECT text FROM run_inputs WHERE run_id = ?", (run_id,)).fetchone()
    if row is not None:
        value = row[0]
        return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)
    row = conn.execute("SELECT body FROM runs WHERE run_id = ?", (run_id,)).fetchone()
    return None if row is None else codec.decode_run(row[0]).input_text


def load_state(conn: sqlite3.Connection, meta: dict[str, Any]) -> StoredState:
    """Everything but the events, as committed (at open, and by reload())."""
    workers = [codec.decode_worker(b) for (b,) in conn.execute("SELECT body FROM workers")]
    workers.sort(key=lambda w: (w.created_at, w.worker_id))
    runs = [codec.decode_run(b) for (b,) in conn.execute("SELECT body FROM runs")]
    runs.sort(key=lambda r: (r.created_at, r.run_id))
    # Lengths and open tails only: the rest is read on demand (read_transcript).
    lengths, transcripts = load_transcript_summary(conn)
    keys = [
        PutRequestKey(*row)
        for row in conn.execute(
            "SELECT scope, request_id, fingerprint, result, seq FROM request_keys ORDER BY seq"
        )
    ]
    return StoredState(
        runtime_id=str(meta["runtime_id"]),
        last_seq=int(meta["last_seq"]),
        workers=workers,
        runs=runs,
        transcripts=transcripts,
        request_keys=keys,
        meta={str(k): str(v) for k, v in meta.items() if "." in str(k)},  # PutMeta's keys
        transcript_lengths=lengths,
        **bundle_rows.load(conn),  # config bundles (metadata) and profile snapshots
    )


def reload_state(conn: sqlite3.Connection) -> StoredState:
    """:func:`load_state` from one snapshot of every table (a reader connection)."""
    conn.execute("BEGIN")
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        meta["last_seq"], meta["event_count"] = counters.committed(conn, meta)  # (they may lag)
        return load_state(conn, meta)
    finally:
        conn.execute("COMMIT")


def read_diagnostics(conn: sqlite3.Connection) -> list[tuple[int, Diagnostic]]:
    rows = conn.execute("SELECT number, body FROM diagnostics ORDER BY number")
    out: list[tuple[int, Diagnostic]] = []
    for number, body in rows:
        diag = codec.decode_payload("diagnostic", body)
        assert isinstance(diag, Diagnostic)
        out.append((number, diag))
    return out


def read_events(
    conn: sqlite3.Connection, after_seq: int, limit: int, worker_id: str
) -> list[Event]:
    if worker_id:
        cursor = conn.execute(
            "SELECT seq, time, worker_id, run_id, kind, body FROM events"
            " WHERE worker_id = ? AND seq > ? ORDER BY seq LIMIT ?",
            (worker_id, after_seq, limit),
        )
    else:
        cursor = conn.execute(
            "SELECT seq, time, worker_id, run_id, kind, body FROM events"
            " WHERE seq > ? ORDER BY seq LIMIT ?",
            (after_seq, limit),
        )
    return [
        Event(seq, t, wid, rid, codec.decode_payload(kind, body))
        for seq, t, wid, rid, kind, body in cursor
    ]
