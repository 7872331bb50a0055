"""The SQLite file format's migrations (``_sqlite_schema.MIGRATIONS``), each run inside the
opening transaction: a failure rolls the whole file back to what it was.

Version 1 → 2 (:func:`v1_to_v2`), in place:

* ``events`` (a row per event) and ``events_by_worker`` become ``event_chunks`` (see
  ``_sqlite_chunks``). Version 1 did not record transactions, so each chunk is a stretch of
  consecutive seqs of one worker (at most ``CHUNK_MAX_EVENTS``), its ``tx_first`` its own first
  seq (no two chunks overlap, which keeps the merge's invariant). Each event's kind and body go
  into the chunk byte for byte (the body is the codec's JSON text), so nothing is re-encoded and
  every event reads back exactly as before; the log's retention state carries over as it is (the
  oldest stored event is the oldest readable one; no floor).
* ``transcript_seq`` (each transcript entry's committing seq) becomes the ``seq`` column of
  ``transcript`` (NULL where it had no row: "not known", as before).
* ``run_inputs`` is keyed by (worker, run) instead of by run with an index by worker
  (``run_inputs_by_worker`` goes): one b-tree less written by a run's first transaction, and
  deleting a worker's inputs stays a range of the primary key.

Tables version 1 gained without a bump (``transcript_seq``, ``run_inputs``) may be missing from an
old file; their absence migrates as "no rows". The cost is one pass over the event log (a million
events: seconds), once.
"""

from __future__ import annotations

import sqlite3

from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_chunks as chunks

RUN_INPUTS = (  # (the schema's own, ``_sqlite_schema`` imports it from here)
    "CREATE TABLE run_inputs (worker_id TEXT NOT NULL, run_id TEXT NOT NULL, text TEXT NOT NULL,"
    " PRIMARY KEY (worker_id, run_id)) WITHOUT ROWID"
)


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def v1_to_v2(conn: sqlite3.Connection) -> None:
    tables = _tables(conn)
    for statement in chunks.SCHEMA:
        conn.execute(statement)
    if "events" in tables:
        _events_to_chunks(conn)
        conn.execute("DROP TABLE events")  # (and events_by_worker)
    conn.execute("ALTER TABLE transcript ADD COLUMN seq INTEGER")
    if "transcript_seq" in tables:
        conn.execute(
            "UPDATE transcript SET seq = (SELECT s.seq FROM transcript_seq AS s"
            " WHERE s.worker_id = transcript.worker_id AND s.idx = transcript.idx)"
        )
        conn.execute("DROP TABLE transcript_seq")
    if "run_inputs" in tables:
        conn.execute("ALTER TABLE run_inputs RENAME TO run_inputs_v1")
    conn.execute(RUN_INPUTS)
    if "run_inputs" in tables:
        conn.execute(
            "INSERT INTO run_inputs (worker_id, run_id, text)"
            " SELECT worker_id, run_id, text FROM run_inputs_v1"
        )
        conn.execute("DROP TABLE run_inputs_v1")  # (and run_inputs_by_worker)


_INSERT = "INSERT INTO event_chunks VALUES (?, ?, ?, ?, ?)"


def _events_to_chunks(conn: sqlite3.Connection) -> None:
    seqs: list[int] = []
    times: list[float] = []
    items: list[str] = []
    worker = ""
    run_id = ""
    pending: list[tuple[int, int, str, int, bytearray]] = []

    def close_chunk() -> None:
        pending.append((seqs[-1], seqs[0], worker, len(seqs), chunks.pack(seqs, times, items)))
        seqs.clear()
        times.clear()
        items.clear()

    rows = conn.execute("SELECT seq, time, worker_id, run_id, kind, body FROM events ORDER BY seq")
    for seq, time, worker_id, rid, kind, body in rows:
        if seqs and (worker_id != worker or len(seqs) >= chunks.CHUNK_MAX_EVENTS):
            close_chunk()
        if not seqs:
            worker, run_id = worker_id, ""
        text = bytes(body).decode("utf-8", "surrogatepass")
        kind_json = codec._encode_str(str(kind))
        if rid == run_id:
            items.append(f"[{kind_json},{text}]")
        else:
            run_id = rid
            items.append(f"[{kind_json},{text},{codec._encode_str(str(rid))}]")
        seqs.append(int(seq))
        times.append(float(time))
        if len(pending) >= 256:
            conn.executemany(_INSERT, pending)
            pending.clear()
    if seqs:
        close_chunk()
    conn.executemany(_INSERT, pending)
