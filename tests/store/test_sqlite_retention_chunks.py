"""SQLite retention deletes in bounded chunks: a store reopened with a far smaller bound trims its
excess at most ``RETENTION_CHUNK`` events per transaction, continuing at once, and a batch written
meanwhile is committed between two chunks — not held behind one long DELETE (which held every
commit, and with it every acknowledgement, for its whole duration). Real SQLite files; the writer
connection's own statement trace shows the order."""

from __future__ import annotations

import asyncio
from pathlib import Path

from serving import eventually
from store_samples import event, seqs

from runtime_server.store import SqliteStore


async def test_an_excess_is_trimmed_in_chunks_with_commits_in_between(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = SqliteStore(path, retention_interval=3600.0)
    await store.open("rt-chunks")
    total, chunk, keep = 6_000, 10, 10  # ~600 chunks: far longer than a loop step
    store.write([event(s) for s in range(1, total + 1)])
    await store.close()

    store = SqliteStore(path, retention_events=keep, retention_interval=0.0)
    await store.open("rt-chunks")
    store._retention_chunk = chunk
    statements: list[str] = []
    assert store._conn is not None
    store._conn.set_trace_callback(statements.append)  # (called on the writer thread)
    try:
        store.write([event(total + 1)])  # the first pass: this batch, then the first chunk
        await store.flush()
        store.write([event(total + 2)])  # queued while the excess is still being trimmed
        await store.flush()
        newest = total + 2
        # The writer raises oldest_seq() before its last chunk's DELETE commits (a reader may
        # find more than promised, never fewer); the deleted count is the settled sign.
        await eventually(
            lambda: store.stats.events_deleted == newest - keep, within=120, what="the excess"
        )
        assert store.oldest_seq() == newest - keep + 1
        stats = store.stats
        assert seqs(await store.read_events(0, 100)) == list(range(newest - keep + 1, newest + 1))
    finally:
        await store.close()
    assert stats.events_deleted == newest - keep
    assert stats.retention_runs >= (newest - keep) / chunk  # at most a chunk per transaction
    deletes = [i for i, s in enumerate(statements) if s.startswith("DELETE FROM event_chunks")]
    inserts = [i for i, s in enumerate(statements) if s.startswith("INSERT INTO event_chunks")]
    assert len(inserts) == 2
    assert deletes[0] < inserts[1] < deletes[-1]  # committed between two chunks


async def test_age_retention_is_chunked_too(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = SqliteStore(path, retention_seconds=1.0, retention_interval=0.0)
    await store.open("rt-chunks")
    store._retention_chunk = 7
    store.write([event(s, time=1.0) for s in range(1, 51)])  # all long expired
    await store.flush()
    await eventually(lambda: store.stats.events_deleted == 49, within=30, what="the expired")
    await asyncio.sleep(0.2)  # (nothing more may go: never the newest event)
    stats = store.stats
    await store.close()
    assert stats.events_deleted == 49
    assert store.oldest_seq() == 50
    assert stats.retention_runs >= 49 / 7
