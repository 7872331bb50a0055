"""Checks that keep a damaged store file from being served or written: the integrity check at
open, the seq high-water mark, and the classification of SQLite errors.

The high-water mark (``<file>.hwm``) is the highest seq the writer has committed, written into a
small side file (in place, 21 bytes) after every commit and *before* the commit is reported, so
every seq a client can have seen is at or below it. It lives outside the database because what it
guards against is the database losing committed transactions: a WAL that is truncated or
overwritten after a crash makes SQLite recover silently to an older state, and the store would
then hand the lost seqs out again. At open, a recovered ``last_seq`` below the mark is refused.

The mark is not fsynced: the page cache survives ``kill -9`` (as the WAL does in ``"process"``
mode). After a power cut the mark may be older than the log, never newer than what was written,
so it can miss a loss but never refuse a sound log; an fsync per commit would double the cost of
``"power"`` mode, whose WAL is fsynced anyway. A missing mark (a store created
before the mark existed, or one an operator removed on purpose to accept a loss) is recreated
from the recovered state.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

from runtime_server.store._errors import StoreOpenError

_MARK_WIDTH = 20  # digits; the file is the number and a newline, rewritten in place

# SQLite primary result codes that mean the file itself is damaged (never a transient condition).
_SQLITE_CORRUPT = 11
_SQLITE_NOTADB = 26


def is_corruption(exc: BaseException) -> bool:
    """True for errors that say the file is damaged (retrying cannot help)."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_CORRUPT, _SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def quick_check(conn: sqlite3.Connection, path: Path) -> None:
    """``PRAGMA quick_check`` (page structure, record formats, NOT NULL; O(file size), without
    integrity_check's index cross-checks): refuse the file on any problem it reports."""
    try:
        rows = [str(r[0]) for r in conn.execute("PRAGMA quick_check(5)")]
    except sqlite3.DatabaseError as exc:
        raise StoreOpenError(path, f"integrity check failed: {exc}") from exc
    if rows != ["ok"]:
        raise StoreOpenError(path, f"integrity check failed: {'; '.join(rows)[:300]}")


def mark_path(path: Path) -> Path:
    return path.with_name(path.name + ".hwm")


def read_mark(path: Path) -> int | None:
    """The high-water mark kept beside ``path``; None when there is none. A mark that cannot be
    read or parsed refuses the store: silently ignoring it would disable the check."""
    mark = mark_path(path)
    try:
        raw = mark.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StoreOpenError(path, f"cannot read the seq high-water mark {mark}: {exc}") from exc
    text = raw.decode("ascii", "replace").strip()
    if not text.isdigit():
        raise StoreOpenError(
            path, f"the seq high-water mark {mark} is damaged ({raw[:40]!r}); see the README"
        )
    return int(text)


def check_seq(path: Path, last_seq: int, *, accept_loss: bool = False) -> int:
    """Refuse a log that ends below the high-water mark. ``last_seq`` is the recovered log's
    (``_sqlite_counters.committed``: the newest event, or meta's above it after an accepted
    loss). Returns the seq the log must continue after: ``last_seq``, or with ``accept_loss``
    the mark when the log lost events below it (the lost seqs are skipped, never handed out
    again).

    (meta.last_seq below the newest event is no inconsistency: meta's counters are written now
    and then, not in every commit; see ``_sqlite_counters``.)"""
    mark = read_mark(path)
    if mark is None or last_seq >= mark:
        return last_seq
    if accept_loss:
        return mark
    raise StoreOpenError(
        path,
        f"the event log ends at seq {last_seq} but seq {mark} was committed before (high-water "
        f"mark {mark_path(path).name}): committed events were lost (a damaged or truncated "
        "WAL?); refusing to hand their seqs out again (--accept-lost-seqs continues after "
        f"{mark}; see the README)",
    )


class SeqMark:
    """The writer's handle on the mark file (writer thread only)."""

    def __init__(self, path: Path) -> None:
        self.path = mark_path(path)
        self._fd: int | None = None

    def open(self, db_path: Path, last_seq: int) -> None:
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            self._put(last_seq)
        except OSError as exc:
            self.close()
            raise StoreOpenError(
                db_path, f"cannot write the seq high-water mark {self.path.name}: {exc}"
            ) from exc

    def write(self, seq: int) -> OSError | None:
        """Record ``seq`` (the writer calls this after each commit, before reporting it). An
        in-place rewrite of an allocated block: it does not fail on a full disk; an I/O error is
        returned for the writer to log (the mark then lags, which weakens only the check)."""
        try:
            self._put(seq)
        except OSError as exc:
            return exc
        return None

    def _put(self, seq: int) -> None:
        fd = self._fd
        if fd is None:
            return
        os.pwrite(fd, f"{seq:0{_MARK_WIDTH}d}\n".encode(), 0)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
