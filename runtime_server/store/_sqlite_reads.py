"""The SQLite store's reads: the committed state at open (:func:`load_state`, with the transcript
summary: the Runtime never has to hold a whole transcript in memory), events, diagnostics, and
the on-demand reads of transcripts and run inputs.

A run's input text has its own row in ``run_inputs`` (keyed by worker and run since schema
version 2; version 1 keyed it by run, with an index by worker): a run's record is rewritten
without its text once the run has started (the Runtime keeps runs as metadata only), and the text
must survive that. For runs written before the table existed, the text is read from the run
record's body. Events: ``_sqlite_chunks``.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from engine import Role
from runtime_server.model import Diagnostic, TranscriptEntry
from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_bundles as bundle_rows
from runtime_server.store import _sqlite_counters as counters
from runtime_server.store._protocol import PutRequestKey, StoredState

# The transcript columns _entry decodes (seq NULL: not known).
_TRANSCRIPT = "SELECT idx, run_id, created_at, body, seq FROM transcript"


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
            _TRANSCRIPT + " WHERE worker_id = ? ORDER BY idx DESC",
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
        _TRANSCRIPT + " WHERE worker_id = ? AND idx >= ? ORDER BY idx LIMIT ?",
        (worker_id, start, limit),
    )
    return [_entry(worker_id, row) for row in rows]


def read_run_input(conn: sqlite3.Connection, run_id: str) -> str | None:
    row = conn.execute(
        "SELECT r.body, i.text FROM runs AS r LEFT JOIN run_inputs AS i"
        " ON i.worker_id = r.worker_id AND i.run_id = r.run_id WHERE r.run_id = ?",
        (run_id,),
    ).fetchone()
    if row is None:
        return None
    body, value = row
    if value is None:
        return codec.decode_run(body).input_text  # (written before run_inputs existed)
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


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
