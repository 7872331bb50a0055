"""The SQLite store's file format: its tables, the versions in ``meta``, the read-only start-up
checks, and the home of its migrations.

Versioning: ``meta.schema_version`` is the version of the tables (:data:`SCHEMA_VERSION`),
``meta.codec_version`` that of the encoded rows (``_codec``). A file newer than this build is
refused, never opened. A file older than this build is migrated, step by step, by
:data:`MIGRATIONS` inside the opening transaction — never reset. Tables added without a version
bump (``CREATE TABLE IF NOT EXISTS``, :data:`ADDED_TABLES` and ``_sqlite_bundles``) are created on
every open, so a file made before them gains them.

A file of this version is refused by a build that supports only an older one (version 1: the
builds before ``event_chunks``): opening it there names the newer version, and nothing is
written to it.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_bundles as bundle_rows
from runtime_server.store import _sqlite_chunks as chunks
from runtime_server.store import _sqlite_counters as counters
from runtime_server.store import _sqlite_migrate as migrate
from runtime_server.store._errors import StoreOpenError
from runtime_server.store._integrity import check_seq, quick_check
from runtime_server.store._sqlite_counters import COUNTERS_EVERY as COUNTERS_EVERY  # (lag bound)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2
"""Bump on any change to the tables; add a migration from every older version (never a reset).
Version 2: events as chunks (``_sqlite_chunks``), each transcript entry's seq a column of
``transcript``, ``run_inputs`` keyed by worker (no index of its own; ``_sqlite_migrate``)."""

SQLITE_HEADER = b"SQLite format 3\x00"


SCHEMA = (
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID",
    *chunks.SCHEMA,
    "CREATE TABLE workers (worker_id TEXT PRIMARY KEY, body BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE runs (run_id TEXT PRIMARY KEY, worker_id TEXT NOT NULL, body BLOB NOT NULL)"
    " WITHOUT ROWID",
    "CREATE INDEX runs_by_worker ON runs (worker_id)",
    "CREATE TABLE transcript (worker_id TEXT NOT NULL, idx INTEGER NOT NULL, run_id TEXT NOT NULL,"
    " created_at REAL NOT NULL, body BLOB NOT NULL, seq INTEGER, PRIMARY KEY (worker_id, idx))"
    " WITHOUT ROWID",
    migrate.RUN_INPUTS,
    "CREATE TABLE request_keys (scope TEXT NOT NULL, request_id TEXT NOT NULL,"
    " fingerprint TEXT NOT NULL, result TEXT NOT NULL, seq INTEGER NOT NULL,"
    " PRIMARY KEY (scope, request_id)) WITHOUT ROWID",
)

# Tables added without a version bump, created on every open (so a file made before them gains
# them): the diagnostics ring (PutDiagnostic; bounded by each write's ``keep``).
ADDED_TABLES = (
    "CREATE TABLE IF NOT EXISTS diagnostics (number INTEGER PRIMARY KEY, body BLOB NOT NULL)",
)

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: dict[int, Migration] = {1: migrate.v1_to_v2}
"""``MIGRATIONS[n]`` turns a version-``n`` file into version ``n + 1`` (inside the opening
transaction; :func:`create_or_migrate` then records the new version)."""


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def check_versions(path: Path, meta: dict[str, Any]) -> None:
    """Refuse a file whose versions are missing, invalid or newer than this build."""
    for key, supported in (
        ("schema_version", SCHEMA_VERSION),
        ("codec_version", codec.CODEC_VERSION),
    ):
        raw = meta.get(key)
        try:
            version = int(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise StoreOpenError(path, f"meta.{key} is missing or invalid ({raw!r})") from None
        if version > supported:
            raise StoreOpenError(
                path,
                f"{key} {version} is newer than this build supports ({supported}); "
                "upgrade worker-runtime to open it",
            )
        if version < 1:
            raise StoreOpenError(path, f"meta.{key} {version} is invalid")
    if not meta.get("runtime_id"):
        raise StoreOpenError(path, "meta.runtime_id is missing")


def check_existing(path: Path, *, accept_seq_loss: bool) -> int:
    """Refuse a file that is not ours or too new, without writing to it (no WAL recovery, no
    schema creation, no checkpoint). Returns the seq floor: the log continues after it (see
    ``_integrity.check_seq``; 0 when nothing was lost or the database is empty)."""
    try:
        with path.open("rb") as f:
            header = f.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise StoreOpenError(path, f"cannot read the file: {exc}") from exc
    if header != SQLITE_HEADER:
        raise StoreOpenError(path, "not an SQLite database (bad file header)")
    # immutable=1 touches nothing on disk but ignores a WAL, so it is used only when there is
    # no WAL to read; with one (an unclean stop), mode=ro reads it without checkpointing.
    wal = path.with_name(path.name + "-wal")
    mode = "mode=ro" if wal.exists() else "immutable=1"
    try:
        conn = sqlite3.connect(f"{path.resolve().as_uri()}?{mode}", uri=True)
    except sqlite3.Error as exc:
        raise StoreOpenError(path, f"cannot open read-only: {exc}") from exc
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
        if not tables:
            return 0  # an empty database: initialised like a new file
        if "meta" not in tables:
            raise StoreOpenError(path, "not a worker-runtime store (no meta table)")
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        check_versions(path, meta)
        quick_check(conn, path)
        try:
            # (meta's counters may lag the log: _sqlite_counters)
            last_seq, _ = counters.committed(conn, meta)
        except (KeyError, TypeError, ValueError):
            raise StoreOpenError(path, "meta's event counters are missing or invalid") from None
    except sqlite3.DatabaseError as exc:
        raise StoreOpenError(path, f"not a readable SQLite database: {exc}") from exc
    finally:
        conn.close()
    return check_seq(path, last_seq, accept_loss=accept_seq_loss)


def lock(path: Path) -> int:
    """One store per file: two writers would hand out the same seqs. Returns the fd holding an
    exclusive ``flock`` on ``<file>.lock`` (closing it releases the lock). ``flock`` dies with its
    process, so a kill -9 leaves no stale lock."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreOpenError(path, f"cannot create {lock_path.name}: {exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise StoreOpenError(
            path, f"in use by another store or process (lock {lock_path.name} is held)"
        ) from None
    return fd


def prepare(
    conn: sqlite3.Connection, path: Path, new_runtime_id: str, seq_floor: int, wal_limit: int
) -> dict[str, Any]:
    """The write connection's settings (WAL, no automatic checkpoints), the tables created or
    migrated, the versions checked, and a lost range of seqs skipped (``seq_floor``, accepted by
    the operator). Returns ``meta``."""
    if path.stat().st_size == 0:
        # a new file holds users' data: private (0600) before WAL mode, as SQLite gives its
        # -wal and -shm files the database's own mode
        os.chmod(path, 0o600)
    mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreOpenError(path, f"cannot enable WAL (journal_mode is {mode})")
    # Checkpoints copy the WAL into the main file and fsync it: tens of milliseconds. Left
    # automatic, they run inside a commit on the writer and stall every publish behind it;
    # the checkpointer thread does them instead.
    conn.execute("PRAGMA wal_autocheckpoint=0")
    conn.execute(f"PRAGMA journal_size_limit={wal_limit}")
    conn.execute("PRAGMA foreign_keys=OFF")
    create_or_migrate(conn, new_runtime_id)
    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    check_versions(path, meta)
    last_seq, count = counters.committed(conn, meta)  # meta's rows may lag (_sqlite_counters)
    if seq_floor > last_seq:
        log.warning(
            "SQLite store %s: events %d..%d were lost; accepted: the log continues after %d",
            path,
            last_seq + 1,
            seq_floor,
            seq_floor,
        )
        last_seq = seq_floor
    if (last_seq, count) != (int(meta["last_seq"]), int(meta["event_count"])):
        with transaction(conn):  # exact again (every event is at or below last_seq)
            counters.write(conn, last_seq, count)
    meta["last_seq"], meta["event_count"] = last_seq, count
    return meta


def create_or_migrate(conn: sqlite3.Connection, new_runtime_id: str) -> None:
    """In one transaction: a new file gets the tables and its ``meta`` rows; an older one is
    migrated to :data:`SCHEMA_VERSION`; every file gains the tables added since version 1."""
    with transaction(conn):
        if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
            for statement in SCHEMA:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [
                    ("schema_version", SCHEMA_VERSION),
                    ("codec_version", codec.CODEC_VERSION),
                    ("runtime_id", new_runtime_id),
                    ("last_seq", 0),
                    ("event_count", 0),
                ],
            )
        else:
            _migrate(conn)
        for statement in ADDED_TABLES:
            conn.execute(statement)
        bundle_rows.create_tables(conn)  # config bundles and profile snapshots, likewise


def _migrate(conn: sqlite3.Connection) -> None:
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        version = int(row[0]) if row else SCHEMA_VERSION
    except (TypeError, ValueError):
        return  # check_versions refuses it, with its message
    while 1 <= version < SCHEMA_VERSION:
        MIGRATIONS[version](conn)
        version += 1
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (version,))


def no_checkpoint_guard(path: Path) -> sqlite3.Connection | None:
    """A damaged file must not be written, but the last connection to close checkpoints the
    WAL into it. A read-only connection holding a read transaction until everything else is
    closed makes every other close skip that (it cannot lock the file), and closes last
    without checkpointing (read-only connections never do)."""
    try:
        guard = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
        )
        guard.execute("BEGIN")
        guard.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
    except sqlite3.Error as exc:
        log.warning("SQLite store %s: cannot hold off the closing checkpoint: %s", path, exc)
        return None
    return guard
