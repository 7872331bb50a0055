"""The durable store: one SQLite file in WAL mode, written by one thread with group commit.

Threads and who owns what::

    event loop ── write() ──► held ──► SimpleQueue ──► writer thread (the only write connection)
        ▲      (until the loop's burst of            │ BEGIN; every queued batch; COMMIT
        │       writes ends: _handover)               │
        └──── call_soon_threadsafe(_on_written) ◄─────┘ then retention, now and then
    event loop ── read_events() ──► read pool (2 threads, one read-only connection each)
    checkpointer thread: PASSIVE WAL checkpoints after commits (throttled), off the writer's path

Modules: this one is the loop side (the Store protocol, flush waiters, failure reports, close);
``_sqlite_writer`` the writer and checkpointer threads; ``_sqlite_schema`` the file format (tables,
versions, start-up checks, the lock, migrations); ``_sqlite_reads`` the reads; ``_sqlite_chunks``
the event log's rows and their reads.

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
quick_check``, the schema and codec versions, and the seq high-water mark (see ``_integrity``),
which catches a WAL that lost committed transactions.

Retention runs on the writer every ``retention_interval`` seconds, in transactions of its own of at
most ``RETENTION_CHUNK`` trimmed events (a larger excess continues at once, a chunk per writer pass,
with the batches queued meanwhile committed in between); it trims by count (exact: the count is
kept in ``meta``) and by age, and never deletes the newest event. It moves the log's floor (the
oldest readable seq) and deletes the event chunks wholly below it (``_sqlite_chunks``).

One store per file: ``open()`` takes an exclusive ``flock`` on ``<file>.lock`` (released by
``close()`` or the death of the process).

``open()`` never scans the event log: ``last_seq`` and the event count live in ``meta`` (written
every ``COUNTERS_EVERY`` events, completed at open from the events after them: see
``_sqlite_counters``), the oldest seq is read from the first rows above the floor; only workers,
runs, transcripts and idempotency keys are read.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

from runtime_server.model import Diagnostic, Event, TranscriptEntry
from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_bundles as bundle_rows
from runtime_server.store import _sqlite_chunks as chunks
from runtime_server.store import _sqlite_reads as reads
from runtime_server.store import _sqlite_schema as schema
from runtime_server.store._backlog import DEFAULT_MAX_WRITE_BACKLOG, BacklogBound, WriteBacklog
from runtime_server.store._errors import StoreCorrupt, StoreFailure, StoreOpenError
from runtime_server.store._handover import HandOver
from runtime_server.store._integrity import SeqMark, is_corruption
from runtime_server.store._protocol import (
    CommitListener,
    FailureListener,
    Mutation,
    StoredState,
)
from runtime_server.store._sqlite_schema import SCHEMA_VERSION
from runtime_server.store._sqlite_writer import (
    RESUME,
    STOP,
    WAKE,
    Batch,
    Durability,
    StoreStats,
    WriterThreads,
    describe,
)

__all__ = ["SCHEMA_VERSION", "Durability", "SqliteStore", "StoreStats"]

T = TypeVar("T")

log = logging.getLogger(__name__)

# Retention and WAL sizes are the writer's (``_sqlite_writer``); the file format is
# ``_sqlite_schema``'s (SCHEMA_VERSION, tables, start-up checks, migrations).

# After a checkpoint resets the WAL, truncate its file to this size (the disk space it keeps).
_WAL_SIZE_LIMIT = 64 * 1024 * 1024


class SqliteStore(WriterThreads, BacklogBound, HandOver):
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
        max_write_backlog: int = DEFAULT_MAX_WRITE_BACKLOG,
    ) -> None:
        _check_options(durability, retention_events, retention_seconds, retention_interval)
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
        self._backlog = WriteBacklog(max_write_backlog)  # backpressure (see write_wait)

        self._listener: CommitListener | None = None
        self._failure_listener: FailureListener | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: sqlite3.Connection | None = None  # the writer's
        self._writer: threading.Thread | None = None
        self._checkpointer: threading.Thread | None = None
        self._lock_fd: int | None = None
        self._init_checkpoints()  # (_sqlite_writer: the checkpointer's events and bounds)
        self._stopping = threading.Event()
        self._closing = threading.Event()  # cuts the writer's retry backoff short
        self._corrupt = threading.Event()  # the file is damaged: never write to it again
        self._mark = SeqMark(self.path)
        self._queue: queue.SimpleQueue[Batch | list[Batch] | object] = queue.SimpleQueue()
        self._init_hand_over()  # batches written, held until the loop's burst of writes ends
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
        self._counts = [0] * len(fields(StoreStats))  # the writer's counters (see stats)
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
        self._queue.put(RESUME)

    async def reload(self) -> StoredState:
        """The committed state, read afresh (after a failure: what memory must go back to)."""
        self._read_pool_or_raise()
        return await self._read(reads.reload_state)

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
        self._hold((self._batches_written, tuple(events), tuple(mutations)))  # see _handover

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
        self._read_pool_or_raise()
        if limit <= 0:
            return []
        return await self._read(chunks.read_events, after_seq, limit, worker_id, self._oldest)

    def oldest_seq(self) -> int:  # (reads filter below it: _sqlite_chunks)
        return self._oldest

    async def read_diagnostics(self) -> list[tuple[int, Diagnostic]]:
        return await self._read(reads.read_diagnostics)

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> list[TranscriptEntry]:
        if limit <= 0:
            return []
        return await self._read(reads.read_transcript, worker_id, max(0, start), limit)

    async def read_run_input(self, run_id: str) -> str | None:
        return await self._read(reads.read_run_input, run_id)

    async def read_config_bundle(self, bundle_id: str, digest: str) -> bytes | None:
        return await self._read(bundle_rows.read_content, bundle_id, digest)

    def memory_bytes(self) -> int:
        return 0  # the data lives in the file (page caches are bounded; batches are in flight)

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
            await asyncio.to_thread(schema.no_checkpoint_guard, self.path)
            if self._corrupt.is_set()
            else None
        )
        if self._writer is not None:
            self._release_held()
            self._queue.put(STOP)
            await asyncio.to_thread(self._writer.join)
        self._stopping.set()
        self._checkpoint_wanted.set()
        self._checkpoint_soon.set()
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
        self._backlog.release(0, ended=True)
        if self._failure is not None:
            raise self._failure

    @property  # --- diagnostics ---
    def stats(self) -> StoreStats:
        return StoreStats(*self._counts)

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
            # read-only: refuses before anything is written
            self._seq_floor = schema.check_existing(
                self.path, accept_seq_loss=self._accept_seq_loss
            )
        try:
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)  # users' data
        except OSError as exc:
            raise StoreOpenError(self.path, f"cannot create the directory: {exc}") from exc
        self._lock_fd = schema.lock(self.path)
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

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def _init_and_load(self, conn: sqlite3.Connection, new_runtime_id: str) -> StoredState:
        self._set_sync(conn)
        meta = schema.prepare(conn, self.path, new_runtime_id, self._seq_floor, _WAL_SIZE_LIMIT)
        self._last_seq = int(meta["last_seq"])
        self._event_count = int(meta["event_count"])
        self._oldest = chunks.oldest(conn, chunks.floor_of(meta))
        return reads.load_state(conn, meta)

    # --- loop-side callbacks --------------------------------------------------------------------

    def _on_commit(self, seq: int) -> None:
        if seq > self._reported_seq:
            self._reported_seq = seq
            if self._listener is not None:
                self._listener(seq)
            self._backlog.release(self.write_backlog)

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
        self._drop_held()
        err = _write_failure(self.path, exc, corrupt, self._reported_seq)
        if isinstance(self._failure, StoreCorrupt) and not isinstance(err, StoreCorrupt):
            err = self._failure  # damaged stays damaged
        self._failure = err
        while self._flush_waiters:
            _, future = self._flush_waiters.popleft()
            if not future.done():
                future.set_exception(err.again())
        self._backlog.release(0, ended=True)
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

    async def _read(self, read: Callable[..., T], *args: Any) -> T:
        """``read(connection, *args)`` on a reader thread, with its own read-only connection;
        an SQLite or decoding error becomes StoreFailure (a damaged file: StoreCorrupt, and the
        writer stops writing to it)."""
        pool = self._read_pool_or_raise()
        loop = asyncio.get_running_loop()
        result: T = await loop.run_in_executor(pool, self._read_guarded, read, *args)
        return result

    def _read_guarded(self, read: Callable[..., T], *args: Any) -> T:
        try:
            return read(self._reader(), *args)
        except (sqlite3.Error, codec.CodecError) as exc:
            err = _read_failure(self.path, exc)
            if isinstance(err, StoreCorrupt) and not self._corrupt.is_set():
                self._corrupt.set()
                self._queue.put(WAKE)
            raise err from exc


# --- helpers --------------------------------------------------------------------------------------


def _closed_error() -> RuntimeError:
    return RuntimeError("SqliteStore is closed")


def _check_options(
    durability: str, retention_events: int, retention_seconds: float, retention_interval: float
) -> None:
    if durability not in ("process", "power"):
        raise ValueError(f"durability must be 'process' or 'power', not {durability!r}")
    if retention_events < 1:
        raise ValueError("retention_events must be >= 1")
    if retention_seconds < 0 or retention_interval < 0:
        raise ValueError("retention_seconds and retention_interval must be >= 0")


def _write_failure(
    path: Path, exc: BaseException, corrupt: bool, reported_seq: int
) -> StoreFailure:
    """What a writer failure reported on the loop becomes for the store's callers."""
    if corrupt and isinstance(exc, StoreCorrupt):
        return exc
    if corrupt:
        err: StoreFailure = StoreCorrupt(path, f"the file is damaged ({describe(exc)})")
    else:
        err = StoreFailure(
            f"SQLite store {str(path)!r} failed to write ({describe(exc)}); nothing "
            f"after seq {reported_seq} was committed",
            path=str(path),
        )
    err.__cause__ = exc
    return err


def _read_failure(path: Path, exc: sqlite3.Error | codec.CodecError) -> StoreFailure:
    """What a failed read becomes: a damaged file (an undecodable row, a corrupt page) is
    StoreCorrupt — the writer then stops writing to it — anything else StoreFailure."""
    if isinstance(exc, codec.CodecError) or is_corruption(exc):
        return StoreCorrupt(path, f"the file is damaged ({describe(exc)})")
    return StoreFailure(f"SQLite store {str(path)!r} cannot read ({describe(exc)})", path=str(path))
