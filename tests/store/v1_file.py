"""A schema-version-1 SQLite store file, built the way the version-1 store wrote it: its DDL
(copied from the version-1 build, ``_sqlite_schema``, ``_transcript_seqs``, ``_sqlite_reads``,
``_sqlite_bundles``, as they stood at 6b1d788) and its rows encoded as it encoded them — an event
row per event with the codec's payload JSON as its body, a run's record without its input text
plus the text in ``run_inputs``, each transcript entry's seq in ``transcript_seq``. Fixed here,
never derived from the current code's tables, so the migration test always starts from a real
version-1 file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from runtime_server.model import ConfigBundle, Diagnostic, Event, Run, TranscriptEntry, Worker
from runtime_server.store import PutRequestKey, codec

V1_DDL = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    "CREATE TABLE events (seq INTEGER PRIMARY KEY, time REAL NOT NULL, worker_id TEXT NOT NULL,"
    " run_id TEXT NOT NULL, kind TEXT NOT NULL, body BLOB NOT NULL)",
    "CREATE INDEX events_by_worker ON events (worker_id, seq)",
    "CREATE TABLE workers (worker_id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE runs (run_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL, body BLOB NOT NULL)"
    " WITHOUT ROWID",
    "CREATE INDEX runs_by_worker ON runs (worker_id)",
    "CREATE TABLE transcript (worker_id TEXT NOT NULL, idx INTEGER NOT NULL, run_id TEXT NOT NULL,"
    " created_at REAL NOT NULL, body BLOB NOT NULL, PRIMARY KEY (worker_id, idx)) WITHOUT ROWID",
    "CREATE TABLE request_keys (scope TEXT NOT NULL, request_id TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL, result TEXT NOT NULL, seq INTEGER NOT NULL,"
    " PRIMARY KEY (scope, request_id)) WITHOUT ROWID",
    # added to version 1 without a bump (created on every open by the version-1 build)
    "CREATE TABLE IF NOT EXISTS diagnostics (number INTEGER PRIMARY KEY, body BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS transcript_seq (worker_id TEXT NOT NULL, idx INTEGER NOT NULL,"
    " seq INTEGER NOT NULL, PRIMARY KEY (worker_id, idx)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS run_inputs (run_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL,"
    " text TEXT NOT NULL) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS run_inputs_by_worker ON run_inputs (worker_id)",
    "CREATE TABLE IF NOT EXISTS config_bundles (id TEXT NOT NULL, digest TEXT NOT NULL,"
    " media_type TEXT NOT NULL, size_bytes INTEGER NOT NULL, created_at REAL NOT NULL,"
    " profiles TEXT NOT NULL, annotations TEXT NOT NULL, content BLOB NOT NULL,"
    " PRIMARY KEY (id, digest)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS worker_profiles (worker_id TEXT PRIMARY KEY,"
    " snapshot TEXT NOT NULL) WITHOUT ROWID",
)


@dataclass
class V1Content:
    runtime_id: str
    events: Sequence[Event]
    workers: Sequence[Worker] = ()
    runs: Sequence[Run] = ()  # run_inputs holds the text of those with one...
    legacy_runs: Sequence[Run] = ()  # ...these carry it in their record (before run_inputs)
    transcript: Sequence[TranscriptEntry] = ()  # those with a seq get a transcript_seq row
    request_keys: Sequence[PutRequestKey] = ()
    diagnostics: Sequence[tuple[int, Diagnostic]] = ()
    bundles: Sequence[tuple[ConfigBundle, bytes]] = ()
    profiles: dict[str, str] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)  # PutMeta keys (with a dot)


def write_v1_file(path: Path, c: V1Content) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("BEGIN")
        for statement in V1_DDL:
            conn.execute(statement)
        last_seq = c.events[-1].seq if c.events else 0
        conn.executemany(
            "INSERT INTO meta (key, value) VALUES (?, ?)",
            [
                ("schema_version", 1),
                ("codec_version", 1),
                ("runtime_id", c.runtime_id),
                ("last_seq", last_seq),
                ("event_count", len(c.events)),
                *c.meta.items(),
            ],
        )
        conn.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)",
            [
                (e.seq, e.time, e.worker_id, e.run_id, *codec.encode_payload(e.payload))
                for e in c.events
            ],
        )
        for w in c.workers:
            conn.execute("INSERT INTO workers VALUES (?, ?)", (w.worker_id, codec.encode_worker(w)))
        for r in c.runs:
            conn.execute(
                "INSERT INTO runs VALUES (?, ?, ?)",
                (r.run_id, r.worker_id, codec.encode_run(r, with_input=False)),
            )
            if r.input_text:
                try:
                    text: str | bytes = r.input_text.encode() and r.input_text
                except UnicodeEncodeError:  # a lone surrogate: version 1 kept such text as bytes
                    text = r.input_text.encode("utf-8", "surrogatepass")
                conn.execute(
                    "INSERT INTO run_inputs VALUES (?, ?, ?)", (r.run_id, r.worker_id, text)
                )
        for r in c.legacy_runs:
            conn.execute(
                "INSERT INTO runs VALUES (?, ?, ?)", (r.run_id, r.worker_id, codec.encode_run(r))
            )
        for e in c.transcript:
            conn.execute(
                "INSERT INTO transcript VALUES (?, ?, ?, ?, ?)",
                (e.worker_id, e.index, e.run_id, e.created_at, codec.encode_message(e.message)),
            )
            if e.seq:
                conn.execute(
                    "INSERT INTO transcript_seq VALUES (?, ?, ?)", (e.worker_id, e.index, e.seq)
                )
        for k in c.request_keys:
            conn.execute(
                "INSERT INTO request_keys VALUES (?, ?, ?, ?, ?)",
                (k.scope, k.request_id, k.fingerprint, k.result, k.seq),
            )
        for number, d in c.diagnostics:
            conn.execute(
                "INSERT INTO diagnostics VALUES (?, ?)", (number, codec.encode_payload(d)[1])
            )
        for b, content in c.bundles:
            conn.execute(
                "INSERT INTO config_bundles VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    b.id,
                    b.digest,
                    b.media_type,
                    b.size_bytes,
                    b.created_at,
                    json.dumps(list(b.profiles)),
                    json.dumps(dict(b.annotations), sort_keys=True),
                    content,
                ),
            )
        conn.executemany("INSERT INTO worker_profiles VALUES (?, ?)", list(c.profiles.items()))
        conn.execute("COMMIT")
    finally:
        conn.close()
