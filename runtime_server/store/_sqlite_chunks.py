"""The SQLite store's event log (schema version 2): events stored as *chunks*, one row per worker
per transaction, and the reads that turn chunks back into events.

Why: in version 1 every event was a row of ``events`` plus an entry of ``events_by_worker``. A
sequential 10-word run's 18 events cost 130-190 µs of the writer's CPU and ~27 KiB of WAL in
SQLite alone (bare ``sqlite3``, measured), the same events as one row 62-76 µs and ~10 KiB, and
each event's body was a separate ``bytes`` value built and bound on its own. Now a transaction
writes one row per worker it has events of (at most :data:`CHUNK_MAX_EVENTS` events to a row),
encoded once, and one index entry per row.

A row (``event_chunks``)::

    last_seq  INTEGER PRIMARY KEY  the chunk's newest seq (the rowid: rows are in seq order)
    tx_first  INTEGER              the first seq of the transaction that wrote it
    worker_id TEXT                 every event of the chunk is this worker's
    events    INTEGER              how many events the chunk holds
    body      BLOB                 the events (below)

    index event_chunks_by_worker (worker_id, last_seq)

The body: a little-endian ``uint32`` count ``n``, ``n`` ``int64`` seqs (increasing), ``n``
``float64`` times (exact: no text round trip), then UTF-8 JSON (``surrogatepass``, like every
body): a list of ``n`` items ``[kind, payload]``, or ``[kind, payload, run_id]`` where the run id
differs from the previous event's (the first event's is compared with ``""``). ``kind`` and
``payload`` are exactly the version-1 event row's ``kind`` and body (``_codec``; so
``codec_version`` stays 1).

A chunk's seqs need not be consecutive: when several workers' events interleave in one
transaction, each worker's chunk skips the others' seqs, and the transaction's chunks overlap in
seq range. Different transactions never overlap (seqs increase with commits), which is what
``tx_first`` records: **no row with a larger ``last_seq`` holds a seq below a row's
``tx_first``**. So:

* a read of one worker's events is an index range scan (``worker_id = ? AND last_seq > ?``) whose
  rows come in seq order, and it stops once it has ``limit`` events;
* a read of every worker's events is a rowid range scan (``last_seq > ?``) that merges the
  rows of one transaction, and stops at the first row whose ``tx_first`` lies above the
  ``limit``-th event found: every row after it holds only later seqs.

Retention hides rather than cuts: it moves the *floor* (``meta.oldest_seq``, the oldest readable
seq, always the seq of a stored event) and deletes only the rows wholly below it. A row that
straddles the floor stays, and every read filters out its events below the floor. The events kept
but hidden belong to the one transaction whose seq range holds the floor, so they number at most
one transaction's (``_MAX_EVENTS_PER_TRANSACTION`` in ``_sqlite_writer``). The count bound
(``event_count``, in ``meta``) counts readable events only and stays exact.
"""

from __future__ import annotations

import bisect
import sqlite3
import struct
from collections.abc import Callable
from typing import Any, TypeVar

from runtime_server.model import Event
from runtime_server.store import _codec as codec

CHUNK_MAX_EVENTS = 256
"""At most this many events to a row (a worker's longer stretch in one transaction is split):
bounds what a read with a small ``limit`` decodes."""

SCHEMA = (
    "CREATE TABLE event_chunks (last_seq INTEGER PRIMARY KEY, tx_first INTEGER NOT NULL,"
    " worker_id TEXT NOT NULL, events INTEGER NOT NULL, body BLOB NOT NULL)",
    "CREATE INDEX event_chunks_by_worker ON event_chunks (worker_id, last_seq)",
)

FLOOR_KEY = "oldest_seq"  # meta: the oldest readable seq (absent or 0: no floor)

_COUNT = struct.Struct("<I")
_SELECT_ALL = (
    "SELECT tx_first, worker_id, body FROM event_chunks WHERE last_seq > ? ORDER BY last_seq"
)
_SELECT_WORKER = (
    "SELECT body FROM event_chunks WHERE worker_id = ? AND last_seq > ? ORDER BY last_seq"
)


def pack(seqs: list[int], times: list[float], items: list[str]) -> bytearray:
    """A chunk's body from its events' seqs, times and JSON items (see the module doc)."""
    n = len(seqs)
    body = bytearray(struct.pack(f"<I{n}q{n}d", n, *seqs, *times))
    body += ("[" + ",".join(items) + "]").encode("utf-8", "surrogatepass")
    return body


def _header(body: bytes) -> tuple[int, tuple[int, ...], tuple[float, ...]]:
    try:
        (n,) = _COUNT.unpack_from(body, 0)
        seqs: tuple[int, ...] = struct.unpack_from(f"<{n}q", body, 4)
        times: tuple[float, ...] = struct.unpack_from(f"<{n}d", body, 4 + 8 * n)
    except struct.error as exc:
        raise codec.CodecError(f"cannot decode an event chunk: {exc}") from exc
    return n, seqs, times


def seqs(body: bytes) -> tuple[int, ...]:
    """The chunk's seqs (its header only)."""
    return _header(body)[1]


def decode(body: bytes, worker_id: str, after: int) -> list[Event]:
    """The chunk's events with seq > ``after``, in seq order."""
    n, seqs, times = _header(body)
    start = bisect.bisect_right(seqs, after)
    if start >= n:
        return []
    try:
        items = codec._decode_json(str(memoryview(body)[4 + 16 * n :], "utf-8", "surrogatepass"))
    except ValueError as exc:
        raise codec.CodecError(f"cannot decode an event chunk: {exc!r}") from exc
    if not isinstance(items, list) or len(items) != n:
        raise codec.CodecError("cannot decode an event chunk: wrong number of events")
    out: list[Event] = []
    run_id = ""
    payloads = codec._PAYLOADS
    try:
        for i, item in enumerate(items):
            if len(item) > 2:
                run_id = item[2]
            if i >= start:
                kind = item[0]
                entry = payloads.get(kind)
                if entry is None:
                    raise codec.CodecError(f"unknown event kind {kind!r}")
                out.append(Event(seqs[i], times[i], worker_id, run_id, entry[2](item[1])))
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        if isinstance(exc, codec.CodecError):
            raise
        raise codec.CodecError(f"cannot decode an event chunk: {exc!r}") from exc
    return out


def _seq_times(body: bytes, worker_id: str, after: int) -> list[tuple[int, float]]:
    _, seqs, times = _header(body)
    start = bisect.bisect_right(seqs, after)
    return list(zip(seqs[start:], times[start:], strict=True))


T = TypeVar("T")


def _merged(
    conn: sqlite3.Connection,
    after: int,
    limit: int,
    decode_rows: Callable[[bytes, str, int], list[T]],
    seq_of: Callable[[T], int],
) -> list[T]:
    """Every worker's items with seq > ``after``, in seq order, at most ``limit`` (the merge of
    a transaction's overlapping rows: see the module doc)."""
    out: list[T] = []
    cursor = conn.execute(_SELECT_ALL, (after,))
    try:
        for tx_first, worker_id, body in cursor:
            if len(out) >= limit and tx_first > seq_of(out[limit - 1]):
                break  # this row and every later one hold only later seqs
            items = decode_rows(body, worker_id, after)
            if not items:
                continue
            n = len(out)
            out += items
            if n and seq_of(out[n]) < seq_of(out[n - 1]):
                out.sort(key=seq_of)  # (rows of one transaction overlap)
    finally:
        cursor.close()
    del out[limit:]
    return out


def _event_seq(e: Event) -> int:
    return e.seq


def _first(item: tuple[int, float]) -> int:
    return item[0]


def read_events(
    conn: sqlite3.Connection, after_seq: int, limit: int, worker_id: str, floor: int
) -> list[Event]:
    """Committed events with seq > ``after_seq`` and >= ``floor`` (the oldest readable seq),
    oldest first, at most ``limit``; only ``worker_id``'s when given."""
    after = max(after_seq, floor - 1)
    if not worker_id:
        return _merged(conn, after, limit, decode, _event_seq)
    out: list[Event] = []
    cursor = conn.execute(_SELECT_WORKER, (worker_id, after))
    try:
        for (body,) in cursor:
            out += decode(body, worker_id, after)  # (a worker's rows never overlap)
            if len(out) >= limit:
                break
    finally:
        cursor.close()
    del out[limit:]
    return out


def scan(conn: sqlite3.Connection, after: int, limit: int) -> list[tuple[int, float]]:
    """``(seq, time)`` of the first ``limit`` events with seq > ``after`` (headers only: for
    retention and the oldest seq)."""
    return _merged(conn, after, limit, _seq_times, _first)


def oldest(conn: sqlite3.Connection, floor: int) -> int:
    """The oldest readable seq (0: the log is empty)."""
    first = scan(conn, max(0, floor - 1), 1)
    return first[0][0] if first else 0


def floor_of(meta: dict[str, Any]) -> int:
    try:
        return int(meta.get(FLOOR_KEY) or 0)
    except (TypeError, ValueError):
        return 0
