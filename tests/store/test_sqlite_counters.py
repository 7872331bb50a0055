"""meta's event counters (``last_seq``, ``event_count``) are written every ``COUNTERS_EVERY``
events, not in every commit (one WAL page less per transaction), and completed from the events
table at open: after a clean close, after ``kill -9`` of a real writer process, and with an
accepted loss, the store continues at the right seq and retention by count stays exact (it is
the count that would drift if a lagging row were taken as it is)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from serving import eventually
from store_samples import event, seqs
from test_sqlite_store import run_child_until_killed

from runtime_server.store import SqliteStore, schema

COUNTERS_EVERY = schema.COUNTERS_EVERY  # meta's counters are written every this many events


async def opened(path: Path, **options: object) -> SqliteStore:
    store = SqliteStore(path, **options)  # type: ignore[arg-type]
    await store.open("rt-counters")
    return store


def meta_counters(path: Path) -> tuple[int, int]:
    """(last_seq, event_count) as the file holds them (read-only: no checkpoint, no recovery
    written back)."""
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
    try:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    finally:
        conn.close()
    return int(meta["last_seq"]), int(meta["event_count"])


def set_meta_counters(path: Path, last_seq: int, count: int) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'last_seq'", (last_seq,))
        conn.execute("UPDATE meta SET value = ? WHERE key = 'event_count'", (count,))
    conn.close()


async def test_commits_between_counter_writes_leave_meta_alone(tmp_path: Path) -> None:
    store = await opened(tmp_path / "runtime.db", retention_interval=3600.0)
    statements: list[str] = []
    assert store._conn is not None
    store._conn.set_trace_callback(statements.append)
    try:
        for s in range(1, 6):  # five transactions
            store.write([event(s)])
            await store.flush()
        assert not [s for s in statements if "meta" in s]
        # the transaction that reaches COUNTERS_EVERY events writes both, exact
        store.write([event(s) for s in range(6, COUNTERS_EVERY + 1)])
        await store.flush()
        assert len([s for s in statements if "UPDATE meta" in s]) == 1
        assert meta_counters(tmp_path / "runtime.db") == (COUNTERS_EVERY, COUNTERS_EVERY)
        store.write([event(COUNTERS_EVERY + 1)])
        await store.flush()
        assert meta_counters(tmp_path / "runtime.db") == (COUNTERS_EVERY, COUNTERS_EVERY)
    finally:
        await store.close()
    # a clean close leaves them exact (an older build reads them as they are)
    assert meta_counters(tmp_path / "runtime.db") == (COUNTERS_EVERY + 1, COUNTERS_EVERY + 1)


async def test_lagging_counters_are_completed_at_open(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    store.write([event(s) for s in range(1, 8)])
    await store.close()
    set_meta_counters(path, 3, 3)  # what a crash leaves: events 4..7 committed after the write

    store = await opened(path, retention_events=5, retention_interval=0.0)
    try:
        assert meta_counters(path) == (7, 7)  # completed (and written back) at open
        store.write([event(8)])  # the seq continues above the newest event
        await store.flush()
        # retention by count is exact: 8 events, 5 kept (with the lagging count, 4, none went)
        assert seqs(await store.read_events(0, 100)) == [4, 5, 6, 7, 8]
    finally:
        await store.close()
    assert meta_counters(path) == (8, 5)


async def test_kill_9_then_reopen_continues_with_exact_counters(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    reported = await asyncio.to_thread(run_child_until_killed, path, 300)
    last_in_meta, _ = meta_counters(path)
    assert last_in_meta <= max(reported)  # (usually 0: fewer than COUNTERS_EVERY were written)

    store = SqliteStore(path, retention_events=100, retention_interval=0.0)
    state = await store.open("rt-other")
    try:
        assert state.last_seq >= max(reported)
        survived = seqs(await store.read_events(0, state.last_seq + 1))
        assert set(reported) <= set(survived)
        store.write([event(state.last_seq + 1)])
        await store.flush()

        async def trimmed() -> bool:  # (retention deletes a chunk of 1,000 per writer pass)
            return len(await store.read_events(0, state.last_seq + 10)) <= 100

        await eventually(trimmed, what="retention down to its bound")
        kept = seqs(await store.read_events(0, state.last_seq + 10))
        assert kept == list(range(state.last_seq + 2 - 100, state.last_seq + 2))
    finally:
        await store.close()
    assert meta_counters(path) == (state.last_seq + 1, 100)


async def test_accepted_loss_with_lagging_counters_keeps_the_count(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    store.write([event(s) for s in range(1, 6)])
    await store.close()
    set_meta_counters(path, 2, 2)
    path.with_name(path.name + ".hwm").write_text(f"{9:020d}\n")  # seqs 6..9 lost with the WAL

    store = await opened(path, accept_seq_loss=True, retention_events=5, retention_interval=0.0)
    try:
        assert meta_counters(path) == (9, 5)  # the skip recorded, with the exact count
        store.write([event(10)])
        await store.flush()
        assert seqs(await store.read_events(0, 20)) == [2, 3, 4, 5, 10]  # 6 events, 5 kept
    finally:
        await store.close()
    assert meta_counters(path) == (10, 5)
