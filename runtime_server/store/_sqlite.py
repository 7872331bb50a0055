"""The durable store: one SQLite file in WAL mode, written by one thread with group commit.

Threads and who owns what::

    event loop ── write() ──► SimpleQueue ──► writer thread (the only write connection)
        ▲                                        │ BEGIN; every queued batch; COMMIT
        └──── call_soon_threadsafe(_on_commit) ◄─┘ then retention, now and then
    event loop ── read_events() ──► read pool (2 threads, one read-only connection each)
    checkpointer thread: PASSIVE WAL checkpoints after commits, off the writer's path

``write()`` only validates and enqueues, so the loop never waits for the disk. The writer takes
everything queued meanwhile and commits it in one transaction (group commit: one WAL sync serves
many batches), then reports the highest committed seq on the loop. WAL lets readers see the last
committed snapshot without ever blocking the writer.

Durability: ``"process"`` is ``synchronous=NORMAL`` — a commit is in the WAL (the OS page cache)
before it is reported, so it survives ``kill -9`` of the process but maybe not a power cut.
``"power"`` is ``synchronous=FULL`` (+ ``fullfsync`` where the OS has it): the WAL is fsynced
before every report.

Writer failure (disk full, I/O error): the failing transaction is rolled back, and it and every
batch queued behind it are *discarded* — none of it was reported, so no caller was told it
committed. The failure listener hears of it on the loop (with the seq the log really ends at), and
the store is *failed*: pending and later ``flush()`` calls and ``write()`` raise
:class:`StoreFailure` at once (nothing queues up behind a dead disk). The owner then reloads the
committed state (``reload()``), and calls ``resume()``; the writer retries from there, waiting a
capped exponential backoff (0.1 s doubling to 2 s) before each attempt while failures continue, so
writes resume by themselves once the disk accepts them again. Seqs: the discarded batches' seqs
were never reported, so the log may hand them out again after ``resume()``; a reported seq is never
handed out twice.

A damaged file (SQLITE_CORRUPT / NOTADB, at any write or read, or an undecodable row) is
different: the store fails for good (:class:`StoreCorrupt`), the writer never writes to the file
again, and ``resume()`` refuses; a restart runs the start-up checks, which refuse the file.

Start-up checks (read-only, before anything is written): the SQLite header, ``PRAGMA
quick_check``, the schema and codec versions, meta.last_seq against the newest event, and the seq
high-water mark (see ``_integrity``), which catches a WAL that lost committed transactions.

Retention runs on the writer every ``retention_interval`` seconds, in its own transaction; it trims
by count (exact: the count is kept in ``meta``) and by age, and never deletes the newest event.

One store per file: ``open()`` takes an exclusive ``flock`` on ``<file>.lock`` (released by
``close()`` or the death of the process).

``open()`` never scans the events table: ``last_seq`` and the event count live in ``meta``, the
oldest seq is one primary-key lookup; only workers, runs, transcripts and idempotency keys are read.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import logging
import os
import queue
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

from runtime_server.model import Diagnostic, Event, Run, TranscriptEntry, Worker, now
from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_bundles as bundle_rows
from runtime_server.store import _sqlite_reads as reads
from runtime_server.store._errors import StoreCorrupt, StoreFailure, StoreOpenError
from runtime_server.store._integrity import SeqMark, check_seq, is_corruption, quick_check
from runtime_server.store._protocol import (
    AppendTranscript,
    CommitListener,
    DeleteWorkerData,
    FailureListener,
    Mutation,
    PutDiagnostic,
    PutMeta,
    PutRequestKey,
    PutRun,
    PutWorker,
    StoredState,
)

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
"""Bump on any change to the tables; add a migration from every older version (never a reset)."""

Durability = Literal["process", "power"]

_SQLITE_HEADER = b"SQLite format 3\x00"

# One transaction holds at most this many events, so the first batch of a large backlog is
# reported after one chunk rather than after the whole backlog.
_MAX_EVENTS_PER_TRANSACTION = 20_000

# Checkpoint at most this often; the WAL meanwhile grows by one interval's worth of commits.
_CHECKPOINT_PAUSE = 0.25
# After a checkpoint resets the WAL, truncate its file to this size (the disk space it keeps).
_WAL_SIZE_LIMIT = 64 * 1024 * 1024

_SCHEMA = (
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
)

# Tables added after schema version 1, created on every open (so a v1 file gains them): the
# diagnostics ring (PutDiagnostic; bounded by each write's ``keep``).
_ADDED_TABLES = (
    "CREATE TABLE IF NOT EXISTS diagnostics (number INTEGER PRIMARY KEY, body BLOB NOT NULL)",
)

_Batch = tuple[int, tuple[Event, ...], tuple[Mutation, ...]]
_STOP = object()  # queued by close(): commit what precedes it, then exit
_RESUME = object()  # queued by resume(): batches before it were discarded, commit those after it
_WAKE = object()  # queued by a reader that found the file damaged: the writer fails for good

# Backoff of the writer's retries after a failure (seconds; doubles per failure, capped).
_RETRY_MIN = 0.1
_RETRY_MAX = 2.0
# A retry is attempted only with this much free space on the store's filesystem: a tiny write can
# succeed into the WAL's already allocated slack on a disk that is still full, and resuming on
# that would only fail again at the next real write.
_MIN_FREE_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class StoreStats:
    """Counters of the writer, for diagnostics and tests (``batches / transactions`` is the
    group-commit factor)."""

    transactions: int = 0
    batches: int = 0
    events: int = 0
    retention_runs: int = 0
    events_deleted: int = 0


class SqliteStore:
    """The Store protocol on one SQLite file (created with its parent directory if absent)."""

    kind = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        durability: Durability = "process",
        retention_events: int = 1_000_000,
        retention_seconds: float = 0.0,
        retention_interval: float = 1.0,
        accept_seq_loss: bool = False,
    ) -> None:
        if durability not in ("process", "power"):
            raise ValueError(f"durability must be 'process' or 'power', not {durability!r}")
        if retention_events < 1:
            raise ValueError("retention_events must be >= 1")
        if retention_seconds < 0 or retention_interval < 0:
            raise ValueError("retention_seconds and retention_interval must be >= 0")
        self.path = Path(path)
        self.durability: Durability = durability
        self._retention_events = retention_events
        self._retention_seconds = retention_seconds
        # 0 = after every transaction (tests); the default keeps DELETEs off the hot path.
        self._retention_interval = retention_interval
        # Start even if the log lost committed events (found by the high-water mark): the lost
        # seqs are skipped, so none is handed out twice. An operator's decision, never a default.
        self._accept_seq_loss = accept_seq_loss
        self._seq_floor = 0  # set by the start-up check: the log continues after it

        self._listener: CommitListener | None = None
        self._failure_listener: FailureListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None  # the writer's
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._checkpoint_wanted = threading.Event()
        self._stopping = threading.Event()
        self._closing = threading.Event()  # cuts the writer's retry backoff short
        self._corrupt = threading.Event()  # the file is damaged: never write to it again
        self._mark = SeqMark(self.path)
        self._queue: queue.SimpleQueue[_Batch | object] = queue.SimpleQueue()
        self._closed = False

        # Loop-side bookkeeping (touched only on the event loop).
        self._queued_seq = 0  # highest seq handed to write(); seqs must increase
        self._batches_written = 0
        self._batches_committed = 0
        self._reported_seq = 0
        self._flush_waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

        # Writer-side state (written only by the writer thread once open; plain int reads and
        # writes are atomic under the GIL, so oldest_seq() can read without a lock).
        self._last_seq = 0
        self._event_count = 0
        self._oldest = 0
        self._stats = StoreStats()
        self._failures_in_row = 0  # writer: consecutive failed attempts (drives the backoff)
        # Loop side: set by the failure report, cleared by resume().
        self._failure: StoreFailure | None = None

        self._read_pool: ThreadPoolExecutor | None = None
        self._read_local = threading.local()
        self._read_conns: list[sqlite3.Connection] = []
        self._read_conns_lock = threading.Lock()

    # --- protocol -------------------------------------------------------------------------------

    async def open(self, new_runtime_id: str) -> StoredState:
        if self._conn is not None or self._closed:
            raise RuntimeError("SqliteStore.open() may be called once")
        loop = asyncio.get_running_loop()
        state = await asyncio.to_thread(self._open_sync, new_runtime_id)
        self._loop = loop
        self._queued_seq = self._reported_seq = state.last_seq
        self._read_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="sqlite-read")
        self._writer = threading.Thread(
            target=self._writer_main, name=f"sqlite-writer:{self.path.name}", daemon=True
        )
        self._writer.start()
        self._checkpointer = threading.Thread(
            target=self._checkpointer_main, name=f"sqlite-ckpt:{self.path.name}", daemon=True
        )
        self._checkpointer.start()
        return state

    def set_commit_listener(self, listener: CommitListener) -> None:
        self._listener = listener

    def set_failure_listener(self, listener: FailureListener) -> None:
        self._failure_listener = listener

    def resume(self) -> None:
        """After a failure: accept writes again (the writer retries them with backoff). The
        batches written before the failure report stay discarded; the next seq to write is the
        one after the last reported seq. Raises :class:`StoreFailure` if the file is damaged or
        the store closed."""
        if self._failure is None:
            return
        if isinstance(self._failure, StoreCorrupt) or self._closed:
            raise self._failure
        self._failure = None
        self._queued_seq = self._reported_seq
        self._batches_committed = self._batches_written  # the discarded ones settled (failed)
        self._queue.put(_RESUME)

    async def reload(self) -> StoredState:
        """The committed state, read afresh (after a failure: what memory must go back to)."""
        if self._read_pool is None or self._closed:
            raise RuntimeError("SqliteStore is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._read_pool, self._reload_sync)

    def write(self, events: Sequence[Event], mutations: Sequence[Mutation] = ()) -> None:
        self._check_usable()
        if not events and not mutations:
            return
        seq = self._queued_seq
        for event in events:
            if event.seq <= seq:
                raise ValueError(f"event seq {event.seq} is not above the last written seq {seq}")
            seq = event.seq
        self._queued_seq = seq
        self._batches_written += 1
        # Events and mutations are frozen values: a tuple of them is a complete copy.
        self._queue.put((self._batches_written, tuple(events), tuple(mutations)))

    async def flush(self) -> None:
        self._check_usable()
        target = self._batches_written
        if self._batches_committed >= target:
            return
        assert self._loop is not None
        future: asyncio.Future[None] = self._loop.create_future()
        self._flush_waiters.append((target, future))
        await future

    async def read_events(self, after_seq: int, limit: int, worker_id: str = "") -> list[Event]:
        if self._read_pool is None or self._closed:
            raise RuntimeError("SqliteStore is not open")
        if limit <= 0:
            return []
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._read_pool, self._read_guarded, self._read_events_sync, after_seq, limit, worker_id
        )

    def oldest_seq(self) -> int:
        return self._oldest

    async def read_diagnostics(self) -> list[tuple[int, Diagnostic]]:
        if self._read_pool is None or self._closed:
            raise RuntimeError("SqliteStore is not open")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._read_pool, self._read_guarded, self._read_diagnostics_sync
        )

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> list[TranscriptEntry]:
        if limit <= 0:
            return []
        start = max(0, start)
        pool = self._read_pool_or_raise()

        def read() -> list[TranscriptEntry]:
            return reads.read_transcript(self._reader(), worker_id, start, limit)

        entries: list[TranscriptEntry] = await asyncio.get_running_loop().run_in_executor(
            pool, self._read_guarded, read
        )
        return entries

    async def read_run_input(self, run_id: str) -> str | None:
        pool = self._read_pool_or_raise()

        def read() -> str | None:
            return reads.read_run_input(self._reader(), run_id)

        text: str | None = await asyncio.get_running_loop().run_in_executor(
            pool, self._read_guarded, read
        )
        return text

    async def read_config_bundle(self, bundle_id: str, digest: str) -> bytes | None:
        pool = self._read_pool_or_raise()

        def read() -> bytes | None:
            return bundle_rows.read_content(self._reader(), bundle_id, digest)

        content: bytes | None = await asyncio.get_running_loop().run_in_executor(
            pool, self._read_guarded, read
        )
        return content

    def memory_bytes(self) -> int:
        """0: the data lives in the file. (SQLite's page cache is bounded per connection, about
        2 MB by default, and batches queued for the writer are in flight, not kept.)"""
        return 0

    def _read_pool_or_raise(self) -> ThreadPoolExecutor:
        if self._read_pool is None or self._closed:
            raise RuntimeError("SqliteStore is not open")
        return self._read_pool

    async def close(self) -> None:
        """Commit everything written, stop the writer, close every connection. Idempotent.
        Raises :class:`StoreFailure` (after releasing everything) if the writer had failed."""
        if self._closed:
            return
        self._closed = True
        self._closing.set()
        guard = (
            await asyncio.to_thread(self._no_checkpoint_guard) if self._corrupt.is_set() else None
        )
        if self._writer is not None:
            self._queue.put(_STOP)
            await asyncio.to_thread(self._writer.join)
        self._stopping.set()
        self._checkpoint_wanted.set()
        if self._checkpointer is not None:
            await asyncio.to_thread(self._checkpointer.join)
        if self._read_pool is not None:
            await asyncio.to_thread(self._read_pool.shutdown, wait=True)
        with self._read_conns_lock:
            conns, self._read_conns = self._read_conns, []
        for conn in conns:
            conn.close()
        if self._conn is not None:
            # Last connection out: SQLite checkpoints the WAL into the main file.
            await asyncio.to_thread(self._conn.close)
        if guard is not None:
            guard.close()  # read-only: it never checkpoints
        self._mark.close()
        self._unlock()
        for _, future in self._flush_waiters:
            if not future.done():
                future.set_exception(self._failure or _closed_error())
        self._flush_waiters.clear()
        if self._failure is not None:
            raise self._failure

    def _no_checkpoint_guard(self) -> sqlite3.Connection | None:
        """A damaged file must not be written, but the last connection to close checkpoints the
        WAL into it. A read-only connection holding a read transaction until everything else is
        closed makes every other close skip that (it cannot lock the file), and closes last
        without checkpointing (read-only connections never do)."""
        try:
            guard = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            guard.execute("BEGIN")
            guard.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            log.warning(
                "SQLite store %s: cannot hold off the closing checkpoint: %s", self.path, exc
            )
            return None
        return guard

    # --- diagnostics ----------------------------------------------------------------------------

    @property
    def stats(self) -> StoreStats:
        return self._stats

    @property
    def failed(self) -> bool:
        return self._failure is not None

    @property
    def failure(self) -> StoreFailure | None:
        """The failure being reported (None while writes are accepted)."""
        return self._failure

    # --- open -----------------------------------------------------------------------------------

    def _open_sync(self, new_runtime_id: str) -> StoredState:
        exists = self.path.exists() and self.path.stat().st_size > 0
        if exists:
            self._check_existing()  # read-only: refuses before anything is written
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreOpenError(self.path, f"cannot create the directory: {exc}") from exc
        self._lock()
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            self._unlock()
            raise StoreOpenError(self.path, f"cannot create or open the file: {exc}") from exc
        try:
            state = self._init_and_load(conn, new_runtime_id)
            self._mark.open(self.path, state.last_seq)
        except BaseException as exc:
            conn.close()
            self._unlock()
            if isinstance(exc, sqlite3.Error | codec.CodecError):
                raise StoreOpenError(self.path, f"{type(exc).__name__}: {exc}") from exc
            raise
        self._conn = conn
        return state

    def _lock(self) -> None:
        """One store per file: two writers would hand out the same seqs. ``flock`` dies with its
        process, so a kill -9 leaves no stale lock."""
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise StoreOpenError(self.path, f"cannot create {lock_path.name}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise StoreOpenError(
                self.path, f"in use by another store or process (lock {lock_path.name} is held)"
            ) from None
        self._lock_fd = fd

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _set_sync(self, conn: sqlite3.Connection) -> None:
        if self.durability == "power":
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA fullfsync=ON")  # macOS: F_FULLFSYNC; a no-op elsewhere
            conn.execute("PRAGMA checkpoint_fullfsync=ON")
        else:
            conn.execute("PRAGMA synchronous=NORMAL")

    def _check_existing(self) -> None:
        """Refuse a file that is not ours or too new, without writing to it (no WAL recovery,
        no schema creation, no checkpoint)."""
        try:
            with self.path.open("rb") as f:
                header = f.read(len(_SQLITE_HEADER))
        except OSError as exc:
            raise StoreOpenError(self.path, f"cannot read the file: {exc}") from exc
        if header != _SQLITE_HEADER:
            raise StoreOpenError(self.path, "not an SQLite database (bad file header)")
        # immutable=1 touches nothing on disk but ignores a WAL, so it is used only when there is
        # no WAL to read; with one (an unclean stop), mode=ro reads it without checkpointing.
        wal = self.path.with_name(self.path.name + "-wal")
        mode = "mode=ro" if wal.exists() else "immutable=1"
        try:
            conn = sqlite3.connect(f"{self.path.resolve().as_uri()}?{mode}", uri=True)
        except sqlite3.Error as exc:
            raise StoreOpenError(self.path, f"cannot open read-only: {exc}") from exc
        try:
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
            if not tables:
                return  # an empty database: initialised like a new file
            if "meta" not in tables:
                raise StoreOpenError(self.path, "not a worker-runtime store (no meta table)")
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            _check_versions(self.path, meta)
            quick_check(conn, self.path)
            max_seq = conn.execute("SELECT max(seq) FROM events").fetchone()[0]
        except sqlite3.DatabaseError as exc:
            raise StoreOpenError(self.path, f"not a readable SQLite database: {exc}") from exc
        finally:
            conn.close()
        try:
            last_seq = int(meta.get("last_seq"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise StoreOpenError(self.path, "meta.last_seq is missing or invalid") from None
        self._seq_floor = check_seq(self.path, last_seq, max_seq, accept_loss=self._accept_seq_loss)

    def _init_and_load(self, conn: sqlite3.Connection, new_runtime_id: str) -> StoredState:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise StoreOpenError(self.path, f"cannot enable WAL (journal_mode is {mode})")
        self._set_sync(conn)
        # Checkpoints copy the WAL into the main file and fsync it: tens of milliseconds. Left
        # automatic, they run inside a commit on the writer and stall every publish behind it;
        # the checkpointer thread does them instead.
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute(f"PRAGMA journal_size_limit={_WAL_SIZE_LIMIT}")
        conn.execute("PRAGMA foreign_keys=OFF")
        with _transaction(conn):
            if conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'meta'").fetchone() is None:
                for statement in _SCHEMA:
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
            for statement in _ADDED_TABLES:
                conn.execute(statement)
            reads.create_tables(conn)  # on every open: a file made before them gains them
            bundle_rows.create_tables(conn)  # config bundles and profile snapshots, likewise
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        _check_versions(self.path, meta)
        if self._seq_floor > int(meta["last_seq"]):
            log.warning(
                "SQLite store %s: events %d..%d were lost; accepted: the log continues after %d",
                self.path,
                int(meta["last_seq"]) + 1,
                self._seq_floor,
                self._seq_floor,
            )
            with _transaction(conn):
                conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (self._seq_floor,))
            meta["last_seq"] = self._seq_floor
        self._last_seq = int(meta["last_seq"])
        self._event_count = int(meta["event_count"])
        self._oldest = int(conn.execute("SELECT min(seq) FROM events").fetchone()[0] or 0)
        return self._load(conn, meta)

    def _load(self, conn: sqlite3.Connection, meta: dict[str, Any]) -> StoredState:
        """Everything but the events, as committed (at open, and by reload())."""
        workers = [codec.decode_worker(b) for (b,) in conn.execute("SELECT body FROM workers")]
        workers.sort(key=lambda w: (w.created_at, w.worker_id))
        runs = [codec.decode_run(b) for (b,) in conn.execute("SELECT body FROM runs")]
        runs.sort(key=lambda r: (r.created_at, r.run_id))
        # Lengths and open tails only: the rest is read on demand (read_transcript).
        lengths, transcripts = reads.load_transcript_summary(conn)
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
            **bundle_rows.load(conn),
        )

    # --- writer thread --------------------------------------------------------------------------

    def _writer_main(self) -> None:
        # Age retention needs a clock even when nothing is written; count retention only grows
        # with commits, so without an age limit the writer sleeps until there is work.
        idle = max(self._retention_interval, 0.05) if self._retention_seconds > 0 else None
        last_retention = time.monotonic()
        stop = False
        discarding = False  # after a failure, until resume()'s marker: nothing is committed
        while not stop:
            batches: list[_Batch] = []
            try:
                item = self._queue.get(timeout=idle)
            except queue.Empty:
                item = None
            while item is not None:
                if item is _STOP:
                    stop = True  # still commit everything queued before it
                elif item is _RESUME:
                    discarding = False  # (a damaged file is caught just below)
                elif item is not _WAKE and not discarding:
                    batches.append(item)  # type: ignore[arg-type]
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    item = None
            if discarding:
                continue
            if self._corrupt.is_set():
                self._writer_failed(StoreCorrupt(self.path, "a read found a damaged row or page"))
                discarding = True
                continue
            if batches and self._failures_in_row and not self._closing.is_set():
                # Retrying after a failure: back off (close() cuts the wait short).
                self._closing.wait(min(_RETRY_MAX, _RETRY_MIN * 2 ** (self._failures_in_row - 1)))
                free = _free_bytes(self.path.parent)
                if free is not None and free < _MIN_FREE_BYTES:
                    self._writer_failed(
                        OSError(
                            errno.ENOSPC,
                            f"disk full: only {free} bytes free on the store's filesystem "
                            f"(writes resume with {_MIN_FREE_BYTES})",
                        )
                    )
                    discarding = True
                    continue
            try:
                for chunk in _chunks(batches):
                    self._commit(chunk)
                if time.monotonic() - last_retention >= self._retention_interval:
                    last_retention = time.monotonic()
                    self._apply_retention()
            except Exception as exc:
                self._writer_failed(exc)
                discarding = True
                continue
            if batches:
                if self._failures_in_row:
                    log.warning(
                        "SQLite store %s: writes resumed after %d failed attempts",
                        self.path,
                        self._failures_in_row,
                    )
                    self._failures_in_row = 0
                # flush() returns after retention, so a flushed store is a settled one.
                self._post(self._on_settled, batches[-1][0])

    def _commit(self, batches: list[_Batch]) -> None:
        conn = self._conn
        assert conn is not None
        rows: list[tuple[int, float, str, str, str, bytes]] = []
        for _, events, _ in batches:
            for e in events:
                kind, body = codec.encode_payload(e.payload)
                rows.append((e.seq, e.time, e.worker_id, e.run_id, kind, body))
        with _transaction(conn):
            for _, _, mutations in batches:
                for mutation in mutations:
                    _apply(conn, mutation)
            if rows:
                conn.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?)", rows)
                last_seq = rows[-1][0]
                count = self._event_count + len(rows)
                conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (last_seq,))
                conn.execute("UPDATE meta SET value = ? WHERE key = 'event_count'", (count,))
        if rows:
            self._last_seq, self._event_count = rows[-1][0], self._event_count + len(rows)
            if not self._oldest:
                self._oldest = rows[0][0]
            # The mark goes up before the seq is reported: every seq a client sees is below it.
            error = self._mark.write(self._last_seq)
            if error is not None:
                log.error(
                    "SQLite store %s: cannot write the seq high-water mark: %s", self.path, error
                )
        s = self._stats
        self._stats = replace(
            s,
            transactions=s.transactions + 1,
            batches=s.batches + len(batches),
            events=s.events + len(rows),
        )
        if rows:
            self._post(self._on_commit, rows[-1][0])
        self._checkpoint_wanted.set()

    def _apply_retention(self) -> None:
        conn = self._conn
        assert conn is not None
        if not self._event_count:
            return
        cutoff = self._oldest  # the new oldest seq; everything below it goes
        excess = self._event_count - self._retention_events
        if excess > 0:
            row = conn.execute(
                "SELECT seq FROM events WHERE seq >= ? ORDER BY seq LIMIT 1 OFFSET ?",
                (self._oldest, excess),
            ).fetchone()
            cutoff = max(cutoff, row[0] if row else self._last_seq)
        if self._retention_seconds > 0:
            # seq order is time order (give or take clock steps), so the scan stops at the first
            # young event: its cost is the number of expired events, not the log size.
            row = conn.execute(
                "SELECT seq FROM events WHERE seq >= ? AND time >= ? ORDER BY seq LIMIT 1",
                (cutoff, now() - self._retention_seconds),
            ).fetchone()
            cutoff = max(cutoff, row[0] if row else self._last_seq)  # never the newest
        if cutoff <= self._oldest:
            return
        # Raise the visible bound first: a reader that checked oldest_seq() may then find a few
        # more events than promised, never fewer.
        self._oldest = cutoff
        with _transaction(conn):
            deleted = conn.execute("DELETE FROM events WHERE seq < ?", (cutoff,)).rowcount
            count = self._event_count - deleted
            conn.execute("UPDATE meta SET value = ? WHERE key = 'event_count'", (count,))
        self._event_count = count
        s = self._stats
        self._stats = replace(
            s, retention_runs=s.retention_runs + 1, events_deleted=s.events_deleted + deleted
        )

    def _checkpointer_main(self) -> None:
        """PASSIVE checkpoints beside the writer: they never block it (or readers); the WAL
        restarts from its beginning once a checkpoint has caught up."""
        try:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._set_sync(conn)
        except sqlite3.Error:
            log.exception("SQLite store %s: no checkpointer; the WAL will grow", self.path)
            return
        try:
            while not self._stopping.is_set():
                self._checkpoint_wanted.wait()
                self._checkpoint_wanted.clear()
                if self._stopping.is_set():
                    break
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # Not fatal by itself (the data is in the WAL); a full disk also fails the
                    # writer, which is what callers see. One line: it repeats on a full disk.
                    log.warning("SQLite store %s: checkpoint failed: %s", self.path, exc)
                self._stopping.wait(_CHECKPOINT_PAUSE)  # batch the WAL into fewer checkpoints
        finally:
            conn.close()

    def _writer_failed(self, exc: Exception) -> None:
        """The transaction was rolled back: discard it and everything queued behind it, and tell
        the loop where the log really ends. An I/O condition (disk full) is one log line; anything
        else gets its traceback."""
        self._failures_in_row += 1
        # (a CodecError here is a bug in what was written, not a damaged file: retried after the
        # owner rolls back, the bad batch is gone)
        corrupt = isinstance(exc, StoreCorrupt) or is_corruption(exc)
        if corrupt:
            self._corrupt.set()
        expected = isinstance(exc, sqlite3.Error | OSError | StoreCorrupt)
        if self._failures_in_row == 1 or corrupt:
            log.error(
                "SQLite store %s: the writer failed (%s); writes after seq %d are discarded%s",
                self.path,
                _describe(exc),
                self._last_seq,
                "; the file is damaged: nothing more is written to it" if corrupt else "",
                exc_info=None if expected else exc,
            )
        elif _worth_logging(self._failures_in_row - 1):
            log.warning(
                "SQLite store %s: retry %d failed (%s)",
                self.path,
                self._failures_in_row - 1,
                _describe(exc),
            )
        self._post(self._on_failure, exc, corrupt, self._last_seq)

    def _post(self, callback: Any, *args: Any) -> None:
        loop = self._loop
        if loop is None:
            return
        # The loop may already be closed if the owner never closed the store; the data is
        # committed either way, there is just nobody left to tell.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(callback, *args)

    # --- loop-side callbacks --------------------------------------------------------------------

    def _on_commit(self, seq: int) -> None:
        if seq > self._reported_seq:
            self._reported_seq = seq
            if self._listener is not None:
                self._listener(seq)

    def _on_settled(self, batch_no: int) -> None:
        self._batches_committed = batch_no
        waiters = self._flush_waiters
        while waiters and waiters[0][0] <= batch_no:
            _, future = waiters.popleft()
            if not future.done():
                future.set_result(None)

    def _on_failure(self, exc: BaseException, corrupt: bool, last_seq: int) -> None:
        # Commit reports precede this one (same queue), so last_seq == the reported seq.
        self._reported_seq = max(self._reported_seq, last_seq)
        self._queued_seq = self._reported_seq
        if corrupt and isinstance(exc, StoreCorrupt):
            err: StoreFailure = exc
        elif corrupt:
            err = StoreCorrupt(self.path, f"the file is damaged ({_describe(exc)})")
        else:
            err = StoreFailure(
                f"SQLite store {str(self.path)!r} failed to write ({_describe(exc)}); nothing "
                f"after seq {self._reported_seq} was committed",
                path=str(self.path),
            )
        if exc is not err:
            err.__cause__ = exc
        if isinstance(self._failure, StoreCorrupt) and not isinstance(err, StoreCorrupt):
            err = self._failure  # damaged stays damaged
        self._failure = err
        while self._flush_waiters:
            _, future = self._flush_waiters.popleft()
            if not future.done():
                future.set_exception(err.again())
        if self._failure_listener is not None:
            self._failure_listener(err)

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise self._failure.again()
        if self._closed:
            raise _closed_error()
        if self._conn is None:
            raise RuntimeError("SqliteStore is not open")

    # --- readers --------------------------------------------------------------------------------

    def _reader(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._read_local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA query_only=ON")
            self._read_local.conn = conn
            with self._read_conns_lock:
                self._read_conns.append(conn)
        return conn

    def _read_diagnostics_sync(self) -> list[tuple[int, Diagnostic]]:
        rows = self._reader().execute("SELECT number, body FROM diagnostics ORDER BY number")
        out: list[tuple[int, Diagnostic]] = []
        for number, body in rows:
            diag = codec.decode_payload("diagnostic", body)
            assert isinstance(diag, Diagnostic)
            out.append((number, diag))
        return out

    def _read_guarded(self, read: Any, *args: Any) -> Any:
        """Run ``read`` on a reader thread; an SQLite or decoding error becomes StoreFailure (a
        damaged file: StoreCorrupt, and the writer stops writing to it)."""
        try:
            return read(*args)
        except (sqlite3.Error, codec.CodecError) as exc:
            if isinstance(exc, codec.CodecError) or is_corruption(exc):
                if not self._corrupt.is_set():
                    self._corrupt.set()
                    self._queue.put(_WAKE)
                err: StoreFailure = StoreCorrupt(
                    self.path, f"the file is damaged ({_describe(exc)})"
                )
            else:
                err = StoreFailure(
                    f"SQLite store {str(self.path)!r} cannot read ({_describe(exc)})",
                    path=str(self.path),
                )
            raise err from exc

    def _reload_sync(self) -> StoredState:
        def load() -> StoredState:
            conn = self._reader()
            conn.execute("BEGIN")  # one snapshot for every table
            try:
                meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
                return self._load(conn, meta)
            finally:
                conn.execute("COMMIT")

        state: StoredState = self._read_guarded(load)
        return state

    def _read_events_sync(self, after_seq: int, limit: int, worker_id: str) -> list[Event]:
        if worker_id:
            cursor = self._reader().execute(
                "SELECT seq, time, worker_id, run_id, kind, body FROM events"
                " WHERE worker_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (worker_id, after_seq, limit),
            )
        else:
            cursor = self._reader().execute(
                "SELECT seq, time, worker_id, run_id, kind, body FROM events"
                " WHERE seq > ? ORDER BY seq LIMIT ?",
                (after_seq, limit),
            )
        return [
            Event(seq, t, wid, rid, codec.decode_payload(kind, body))
            for seq, t, wid, rid, kind, body in cursor
        ]


# --- helpers --------------------------------------------------------------------------------------


def _check_versions(path: Path, meta: dict[str, Any]) -> None:
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


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def _apply(conn: sqlite3.Connection, mutation: Mutation) -> None:
    if bundle_rows.apply(conn, mutation):  # config bundles and profile snapshots
        return
    if isinstance(mutation, PutWorker):
        w: Worker = mutation.worker
        conn.execute(
            "INSERT OR REPLACE INTO workers (worker_id, body) VALUES (?, ?)",
            (w.worker_id, codec.encode_worker(w)),
        )
    elif isinstance(mutation, PutRun):
        r: Run = mutation.run
        reads.put_run_input(conn, r)  # its own row: kept when the record is rewritten
        body = codec.encode_run(replace(r, input_text="") if r.input_text else r)
        conn.execute(
            "INSERT OR REPLACE INTO runs (run_id, worker_id, body) VALUES (?, ?, ?)",
            (r.run_id, r.worker_id, body),
        )
    elif isinstance(mutation, AppendTranscript):
        e = mutation.entry
        # REPLACE, not INSERT: writing the entry at an index again states the same fact.
        conn.execute(
            "INSERT OR REPLACE INTO transcript (worker_id, idx, run_id, created_at, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (e.worker_id, e.index, e.run_id, e.created_at, codec.encode_message(e.message)),
        )
    elif isinstance(mutation, DeleteWorkerData):
        wid = mutation.worker_id
        conn.execute("DELETE FROM workers WHERE worker_id = ?", (wid,))
        conn.execute("DELETE FROM runs WHERE worker_id = ?", (wid,))
        conn.execute("DELETE FROM transcript WHERE worker_id = ?", (wid,))
        reads.delete_run_inputs(conn, wid)
        # Only the worker's own keys: "create" keys stay, as they do in the Runtime's memory.
        conn.execute("DELETE FROM request_keys WHERE scope = ?", (wid,))
    elif isinstance(mutation, PutRequestKey):
        k = mutation
        conn.execute(
            "INSERT OR REPLACE INTO request_keys (scope, request_id, fingerprint, result, seq)"
            " VALUES (?, ?, ?, ?, ?)",
            (k.scope, k.request_id, k.fingerprint, k.result, k.seq),
        )
    elif isinstance(mutation, PutMeta):
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (mutation.key, mutation.value)
        )
    elif isinstance(mutation, PutDiagnostic):
        _, body = codec.encode_payload(mutation.diagnostic)
        conn.execute(
            "INSERT OR REPLACE INTO diagnostics (number, body) VALUES (?, ?)",
            (mutation.number, body),
        )
        conn.execute(
            "DELETE FROM diagnostics WHERE number <= ?",
            (mutation.number - max(1, mutation.keep),),
        )
    else:  # pragma: no cover - the Mutation union is closed
        raise TypeError(f"unknown mutation {mutation!r}")


def _chunks(batches: list[_Batch]) -> Iterator[list[_Batch]]:
    chunk: list[_Batch] = []
    size = 0
    for batch in batches:
        chunk.append(batch)
        size += len(batch[1])
        if size >= _MAX_EVENTS_PER_TRANSACTION:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _closed_error() -> RuntimeError:
    return RuntimeError("SqliteStore is closed")


def _worth_logging(attempt: int) -> bool:
    """Retries 1, 2, 4, 8, ... and then every 30th (a minute at the 2 s cap): a disk that stays
    full for hours must not flood the log."""
    return attempt & (attempt - 1) == 0 or attempt % 30 == 0


def _free_bytes(directory: Path) -> int | None:
    try:
        st = os.statvfs(directory)
    except OSError:
        return None
    return st.f_bavail * st.f_frsize


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
