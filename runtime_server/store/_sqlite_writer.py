"""The SQLite store's writer side: the one writer thread (group commit, retention, failure
handling) and the checkpointer thread, as a mixin of :class:`~._sqlite.SqliteStore`.

Everything here runs on those two threads; it hands results to the event loop only through
``_post`` (``call_soon_threadsafe``): commits (``_on_commit``) and settled batches
(``_on_settled``) — both in one call, ``_on_written``, once per pass of the writer — and failures
(``_on_failure``), which the loop side of the store defines. The state it owns — the write
connection, the counters, the oldest seq — is written only here once the store is open
(plain int reads and writes are atomic under the GIL, so the loop may read them).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from runtime_server.model import Event, now
from runtime_server.store import _sqlite_chunks as chunks
from runtime_server.store import _sqlite_counters as counters
from runtime_server.store import _sqlite_rows as row_rules
from runtime_server.store._errors import StoreCorrupt
from runtime_server.store._integrity import SeqMark, is_corruption
from runtime_server.store._protocol import Mutation
from runtime_server.store._sqlite_schema import transaction as _transaction

log = logging.getLogger(__name__)

Durability = Literal["process", "power"]

# One transaction holds at most this many events, so the first batch of a large backlog is
# reported after one chunk rather than after the whole backlog.
_MAX_EVENTS_PER_TRANSACTION = 20_000

# Checkpoints are throttled: one per CHECKPOINT_PAUSE seconds while commits continue. Each copies
# the newest version of every page in the WAL into the database file (and, with
# synchronous=NORMAL, syncs both files); the pages a run touches are mostly the same few (the
# tail pages of the events table and of the indexes, meta), so fewer checkpoints copy far fewer
# pages. The WAL stays bounded: the writer estimates what its commits add to it and wakes the
# checkpointer early once that passes CHECKPOINT_BYTES (an over-estimate: every body's bytes, a
# row's overhead, a few pages per transaction for meta and the tails of tables and indexes).
CHECKPOINT_PAUSE = 1.0
CHECKPOINT_BYTES = 16 * 1024 * 1024
_ROW_BYTES = 128
_TRANSACTION_BYTES = 4 * 4096

# Retention deletes at most this many events per transaction; a larger excess (a store reopened
# with a much smaller bound, a long pause of the clock) is trimmed a chunk per writer pass, with
# the batches queued meanwhile committed between chunks — one long DELETE held every commit (and
# every acknowledgement) back for its whole duration. A chunk of 1,000 short events took 1.4-1.6
# ms on the 2-core development box (outliers to 25 ms under load).
RETENTION_CHUNK = 1000

Batch = tuple[int, tuple[Event, ...], tuple[Mutation, ...]]

STOP = object()  # queued by close(): commit what precedes it, then exit
RESUME = object()  # queued by resume(): batches before it were discarded, commit those after it
WAKE = object()  # queued by a reader that found the file damaged: the writer fails for good

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
    group-commit factor; ``checkpoints`` counts the checkpointer's passes; ``events_deleted``
    the events retention took out of the readable log, some of which may stay in the file,
    hidden below the floor, until their chunk goes: ``_sqlite_chunks``)."""

    transactions: int = 0
    batches: int = 0
    events: int = 0
    retention_runs: int = 0
    events_deleted: int = 0
    checkpoints: int = 0


class WriterThreads:
    """The writer and checkpointer threads of a SqliteStore (see the module doc)."""

    # set by SqliteStore.__init__ / open()
    path: Path
    durability: Durability
    _retention_events: int
    _retention_seconds: float
    _retention_interval: float
    _loop: asyncio.AbstractEventLoop | None
    _conn: sqlite3.Connection | None
    _queue: queue.SimpleQueue[Batch | list[Batch] | object]
    _checkpoint_wanted: threading.Event  # set by every commit: there is something to copy
    _checkpoint_soon: threading.Event  # set when the WAL grew past the bound: ends the pause
    _wal_bytes: int  # the writer's estimate of what the WAL gained since the last checkpoint
    _checkpoint_pause: float  # CHECKPOINT_PAUSE (an attribute: tests shorten or lengthen it)
    _checkpoint_bytes: int  # CHECKPOINT_BYTES (likewise)
    _stopping: threading.Event
    _closing: threading.Event
    _corrupt: threading.Event
    _mark: SeqMark
    _last_seq: int
    _event_count: int
    _uncounted: int  # events committed since meta's counters were last written (_sqlite_counters)
    _oldest: int
    _counts: list[int]  # StoreStats' fields, in order (see ``stats``)
    _failures_in_row: int

    def _init_checkpoints(self) -> None:
        self._checkpoint_wanted = threading.Event()
        self._checkpoint_soon = threading.Event()
        self._wal_bytes = 0
        self._checkpoint_pause = CHECKPOINT_PAUSE
        self._checkpoint_bytes = CHECKPOINT_BYTES
        self._retention_chunk = RETENTION_CHUNK  # (an attribute: tests shorten it)
        self._uncounted = 0  # (writer state: meta's counters, see _sqlite_counters)

    # the loop side's callbacks (defined by SqliteStore)
    def _on_commit(self, seq: int) -> None: ...

    def _on_settled(self, batch_no: int) -> None: ...

    def _on_written(self, seq: int, batch_no: int) -> None:
        """(On the loop.) A writer pass ended: ``seq`` committed (0: nothing new), ``batch_no``
        settled — the pass's one report."""
        if seq:
            self._on_commit(seq)
        self._on_settled(batch_no)

    def _on_failure(self, exc: BaseException, corrupt: bool, last_seq: int) -> None: ...

    def _set_sync(self, conn: sqlite3.Connection) -> None:
        if self.durability == "power":
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA fullfsync=ON")  # macOS: F_FULLFSYNC; a no-op elsewhere
            conn.execute("PRAGMA checkpoint_fullfsync=ON")
        else:
            conn.execute("PRAGMA synchronous=NORMAL")

    def _writer_main(self) -> None:
        # Age retention needs a clock even when nothing is written; count retention only grows
        # with commits, so without an age limit the writer sleeps until there is work.
        idle = max(self._retention_interval, 0.05) if self._retention_seconds > 0 else None
        last_retention = time.monotonic()
        more = False  # the last retention chunk stopped at its bound: the next pass continues
        stop = False
        discarding = False  # after a failure, until resume()'s marker: nothing is committed
        while not stop:
            batches: list[Batch] = []
            try:
                # (a retention excess goes on at once, unless nothing may be written)
                item = self._queue.get(discarding or not more, idle)
            except queue.Empty:
                item = None
            while item is not None:
                if item is STOP:
                    stop = True  # still commit everything queued before it
                elif item is RESUME:
                    discarding = False  # (a damaged file is caught just below)
                elif item.__class__ is list:
                    if not discarding:
                        batches.extend(item)  # handed over at once
                elif item is not WAKE and not discarding:
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
                # One report to the loop per pass (commit and settle together), not one per
                # chunk plus one for settling: each is a wake-up of the loop. Only a pass that
                # spans several chunks reports the earlier ones as they commit, and one that runs
                # retention reports its commit before it (flush() waits for retention, commit
                # listeners do not).
                seq = 0
                for chunk in _chunks(batches):
                    if seq:
                        self._post(self._on_commit, seq)
                    seq = self._commit(chunk)
                if more or time.monotonic() - last_retention >= self._retention_interval:
                    if seq:
                        self._post(self._on_commit, seq)
                        seq = 0
                    last_retention = time.monotonic()
                    more = self._apply_retention()
            except Exception as exc:
                more = False
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
                self._post(self._on_written, seq, batches[-1][0])
        self._write_counters_at_close()

    def _write_counters_at_close(self) -> None:
        """A closed file's ``meta`` counters are exact (an older build reads them as they are);
        never on a damaged file, and a failure here loses nothing (open() completes them)."""
        conn = self._conn
        if not self._uncounted or conn is None or self._corrupt.is_set():
            return
        try:
            with _transaction(conn):
                counters.write(conn, self._last_seq, self._event_count)
        except sqlite3.Error as exc:
            log.warning("SQLite store %s: cannot write the event counters: %s", self.path, exc)
            return
        self._uncounted = 0

    def _commit(self, batches: list[Batch]) -> int:
        """Commit ``batches`` in one transaction; the last seq it committed (0: no events)."""
        conn = self._conn
        assert conn is not None
        # Everything is encoded before BEGIN (see _sqlite_rows): the SQL below runs back to back.
        memo: row_rules.Memo = {}  # runs encoded once per transaction (see _sqlite_rows)
        events = [e for _, evs, _ in batches for e in evs]
        rows = row_rules.chunk_rows(events, memo)  # one row per worker (_sqlite_chunks)
        mutations = [m for _, _, ms in batches for m in ms]
        statements = row_rules.plan(mutations, memo) if mutations else None
        inserts = row_rules.chunk_statements(rows)
        count = self._event_count + len(events)
        # meta's counters only every COUNTERS_EVERY events (one page less per commit; see
        # _sqlite_counters for why the rows may lag and how open() completes them)
        uncounted = self._uncounted + len(events)
        execute = conn.execute
        execute("BEGIN IMMEDIATE")
        try:
            if statements is not None:
                statements.run(conn)
            if rows:
                for sql, params in inserts:
                    execute(sql, params)
                if uncounted >= counters.COUNTERS_EVERY:
                    execute(counters.UPDATE, (rows[-1][0], count))
                    uncounted = 0
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                execute("ROLLBACK")
            raise
        execute("COMMIT")
        if rows:
            self._last_seq, self._event_count = rows[-1][0], count
            self._uncounted = uncounted
            if not self._oldest:
                self._oldest = rows[0][1]  # (the transaction's first seq)
            # The mark goes up before the seq is reported: every seq a client sees is below it.
            error = self._mark.write(self._last_seq)
            if error is not None:
                log.error(
                    "SQLite store %s: cannot write the seq high-water mark: %s", self.path, error
                )
        counts = self._counts  # plain ints: a StoreStats copy per commit cost ~10 µs
        counts[0] += 1
        counts[1] += len(batches)
        counts[2] += len(events)
        if not self._checkpoint_wanted.is_set():  # (a plain read; set() takes a lock)
            self._checkpoint_wanted.set()
        self._wal_bytes += (
            sum([len(row[4]) for row in rows])
            + _ROW_BYTES * (len(rows) + len(mutations))
            + _TRANSACTION_BYTES
        )
        if self._wal_bytes >= self._checkpoint_bytes and not self._checkpoint_soon.is_set():
            self._checkpoint_soon.set()
        return rows[-1][0] if rows else 0

    def _apply_retention(self) -> bool:
        """Trim by count and age, at most ``_retention_chunk`` events per call, in a transaction
        of its own (see ``RETENTION_CHUNK``). True when the chunk's bound stopped it: more may be
        due, and the writer's next pass continues at once.

        Exact in events, as in version 1: the cut is an event's seq found from the chunks'
        headers, and it becomes the floor (``_sqlite_chunks``); rows wholly below it are deleted,
        the events below it in a row that straddles it are hidden by every read."""
        conn = self._conn
        assert conn is not None
        excess = self._event_count - self._retention_events
        if not self._event_count or (excess <= 0 and self._retention_seconds <= 0):
            return False
        oldest = self._oldest
        chunk = self._retention_chunk
        # The next chunk + 1 readable events, in seq order (headers only).
        ahead = chunks.scan(conn, oldest - 1, chunk + 1)
        # The furthest this call may cut: ``chunk`` events past the oldest, and never the newest.
        bound = ahead[chunk][0] if len(ahead) > chunk else self._last_seq
        cutoff = oldest  # the new oldest seq; everything below it goes
        if excess >= chunk:
            cutoff = bound
        elif excess > 0:
            cutoff = max(cutoff, ahead[excess][0] if len(ahead) > excess else self._last_seq)
        if self._retention_seconds > 0 and cutoff < bound:
            # seq order is time order (give or take clock steps): the first young event at or
            # after the cut ends the expired ones.
            horizon = now() - self._retention_seconds
            cutoff = next(
                (seq for seq, t in ahead if cutoff <= seq < bound and t >= horizon), bound
            )
        cutoff = min(cutoff, bound)
        if cutoff <= oldest:
            return False
        removed = sum(1 for seq, _ in ahead if seq < cutoff)  # (every readable event below it)
        # Raise the visible bound first: a reader that checked oldest_seq() may then find a few
        # more events than promised, never fewer.
        self._oldest = cutoff
        with _transaction(conn):
            conn.execute("DELETE FROM event_chunks WHERE last_seq < ?", (cutoff,))
            conn.execute(
                "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (chunks.FLOOR_KEY, cutoff)
            )
            count = self._event_count - removed
            # both counters, exact: the floor never moves without them (_sqlite_counters)
            counters.write(conn, self._last_seq, count)
        self._event_count = count
        self._uncounted = 0
        self._counts[3] += 1
        self._counts[4] += removed
        return cutoff == bound and bound < self._last_seq

    def _checkpointer_main(self) -> None:
        """PASSIVE checkpoints beside the writer: they never block it (or readers); the WAL
        restarts from its beginning once a checkpoint has caught up. Throttled: after each it
        pauses (see ``CHECKPOINT_PAUSE``; the writer cuts the pause short when the WAL grew
        past the bound), then runs again if anything was committed."""
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
                # (a benign race with the writer's addition: the bound is an estimate anyway)
                self._wal_bytes = 0
                self._checkpoint_soon.clear()
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except sqlite3.Error as exc:
                    # Not fatal by itself (the data is in the WAL); a full disk also fails the
                    # writer, which is what callers see. One line: it repeats on a full disk.
                    log.warning("SQLite store %s: checkpoint failed: %s", self.path, exc)
                self._counts[5] += 1
                self._checkpoint_soon.wait(self._checkpoint_pause)  # close() cuts it short too
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
                describe(exc),
                self._last_seq,
                "; the file is damaged: nothing more is written to it" if corrupt else "",
                exc_info=None if expected else exc,
            )
        elif _worth_logging(self._failures_in_row - 1):
            log.warning(
                "SQLite store %s: retry %d failed (%s)",
                self.path,
                self._failures_in_row - 1,
                describe(exc),
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


def _chunks(batches: list[Batch]) -> Iterator[list[Batch]]:
    chunk: list[Batch] = []
    size = 0
    for batch in batches:
        chunk.append(batch)
        size += len(batch[1])
        if size >= _MAX_EVENTS_PER_TRANSACTION:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


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


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
