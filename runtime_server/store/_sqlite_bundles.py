"""The SQLite store's config bundles and worker profile snapshots, in two tables of their own.

Both are created with ``CREATE TABLE IF NOT EXISTS`` on every open, so a file made before them
gains them with no schema version change. ``_sqlite`` calls this module from one line at each of
its seams (create, load, statements, read): the bundle rows never touch the other tables' code.

A bundle row holds the metadata and the exact bytes (a BLOB: the digest is over those bytes, so
they are never re-encoded). Loading reads the metadata only; the bytes are read on demand.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from runtime_server.model import ConfigBundle
from runtime_server.store._protocol import (
    DeleteConfigBundle,
    DeleteWorkerData,
    Mutation,
    PutConfigBundle,
    PutWorkerProfile,
)

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS config_bundles (id TEXT NOT NULL, digest TEXT NOT NULL,"
    " media_type TEXT NOT NULL, size_bytes INTEGER NOT NULL, created_at REAL NOT NULL,"
    " profiles TEXT NOT NULL, annotations TEXT NOT NULL, content BLOB NOT NULL,"
    " PRIMARY KEY (id, digest)) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS worker_profiles (worker_id TEXT PRIMARY KEY,"
    " snapshot TEXT NOT NULL) WITHOUT ROWID",
)


def create_tables(conn: sqlite3.Connection) -> None:
    for statement in SCHEMA:
        conn.execute(statement)


Add = Callable[[str, str, tuple[Any, ...]], None]
"""``add(table, sql, params)``: one statement for the writer's transaction (``_sqlite_rows``)."""


def statements(add: Add, mutation: Mutation) -> bool:
    """Add ``mutation``'s statements if it is one of ours (True: done); a DeleteWorkerData also
    drops the worker's snapshot here and returns False so the store deletes the rest."""
    if isinstance(mutation, PutConfigBundle):
        b = mutation.bundle
        add(
            "config_bundles",
            "INSERT OR IGNORE INTO config_bundles (id, digest, media_type, size_bytes,"
            " created_at, profiles, annotations, content) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                b.id,
                b.digest,
                b.media_type,
                b.size_bytes,
                b.created_at,
                json.dumps(list(b.profiles)),
                json.dumps(dict(b.annotations), sort_keys=True),
                mutation.content,
            ),
        )
        return True
    if isinstance(mutation, DeleteConfigBundle):
        add(
            "config_bundles",
            "DELETE FROM config_bundles WHERE id = ? AND digest = ?",
            (mutation.bundle_id, mutation.digest),
        )
        return True
    if isinstance(mutation, PutWorkerProfile):
        add(
            "worker_profiles",
            "INSERT OR REPLACE INTO worker_profiles (worker_id, snapshot) VALUES (?, ?)",
            (mutation.worker_id, mutation.snapshot),
        )
        return True
    if isinstance(mutation, DeleteWorkerData):
        add(
            "worker_profiles",
            "DELETE FROM worker_profiles WHERE worker_id = ?",
            (mutation.worker_id,),
        )
    return False


def load(conn: sqlite3.Connection) -> dict[str, Any]:
    """``StoredState`` keyword arguments: bundle metadata (ordered by id, digest) and snapshots."""
    bundles = [
        ConfigBundle(
            id=bid,
            digest=digest,
            media_type=media_type,
            size_bytes=int(size),
            created_at=float(created),
            profiles=tuple(json.loads(profiles)),
            annotations=json.loads(annotations),
        )
        for bid, digest, media_type, size, created, profiles, annotations in conn.execute(
            "SELECT id, digest, media_type, size_bytes, created_at, profiles, annotations"
            " FROM config_bundles ORDER BY id, digest"
        )
    ]
    snapshots = dict(conn.execute("SELECT worker_id, snapshot FROM worker_profiles"))
    return {"config_bundles": bundles, "worker_profiles": snapshots}


def read_content(conn: sqlite3.Connection, bundle_id: str, digest: str) -> bytes | None:
    row = conn.execute(
        "SELECT content FROM config_bundles WHERE id = ? AND digest = ?", (bundle_id, digest)
    ).fetchone()
    return None if row is None else bytes(row[0])
