"""Reading the SQLite store's event chunks (schema version 2, ``_sqlite_chunks``) straight from
the file, byte for byte: what a test needs to check the stored bodies or damage one event's row.
Written independently of the store's decoder, from the documented format."""

from __future__ import annotations

import json
import sqlite3
import struct

_DECODER = json.JSONDecoder()


def split(body: bytes) -> list[tuple[int, float, str, str, bytes]]:
    """A chunk's events as ``(seq, time, run_id, kind, payload JSON bytes)``."""
    (n,) = struct.unpack_from("<I", body, 0)
    seqs = struct.unpack_from(f"<{n}q", body, 4)
    times = struct.unpack_from(f"<{n}d", body, 4 + 8 * n)
    text = bytes(body[4 + 16 * n :]).decode("utf-8", "surrogatepass")
    out: list[tuple[int, float, str, str, bytes]] = []
    assert text[0] == "["
    pos, run_id = 1, ""
    for i in range(n):
        if i:
            assert text[pos] == ","
            pos += 1
        assert text[pos] == "["
        kind, pos = _DECODER.raw_decode(text, pos + 1)
        assert text[pos] == ","
        _, end = _DECODER.raw_decode(text, pos + 1)
        payload = text[pos + 1 : end].encode("utf-8", "surrogatepass")
        pos = end
        if text[pos] == ",":
            run_id, pos = _DECODER.raw_decode(text, pos + 1)
        assert text[pos] == "]"
        pos += 1
        out.append((seqs[i], times[i], run_id, kind, payload))
    assert text[pos:] == "]"
    return out


def stored_events(conn: sqlite3.Connection) -> list[tuple[int, str, str, bytes]]:
    """Every stored event (hidden ones below the retention floor too) as ``(seq, worker_id,
    kind, body)``, in seq order."""
    out: list[tuple[int, str, str, bytes]] = []
    for worker_id, body in conn.execute("SELECT worker_id, body FROM event_chunks"):
        out += [(seq, worker_id, kind, payload) for seq, _, _, kind, payload in split(body)]
    out.sort()
    return out


def kinds_and_bodies(conn: sqlite3.Connection) -> list[tuple[str, bytes]]:
    """What version 1's ``SELECT kind, body FROM events ORDER BY seq`` read."""
    return [(kind, body) for _, _, kind, body in stored_events(conn)]
