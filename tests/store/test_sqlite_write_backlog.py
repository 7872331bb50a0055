"""The SQLite store's bounded write queue: ``write_wait()`` holds producers while the backlog
(events written, not yet committed) is at ``max_write_backlog``, releases them once commits bring
it below, and never leaves one waiting on a failed or closed store. Real SQLite files; the writer
is held back by another connection holding the database's write lock."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from store_samples import event, seqs

from runtime_server.errors import StoreFailure
from runtime_server.store import SqliteStore


async def opened(path: Path, bound: int) -> SqliteStore:
    store = SqliteStore(path, max_write_backlog=bound, retention_interval=0.0)
    await store.open("rt-backlog")
    return store


def hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection takes the write lock: the store's writer waits for it (busy timeout)."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=0.0)
    conn.execute("BEGIN IMMEDIATE")
    return conn


async def test_producers_wait_at_the_bound_and_resume_after_commits(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path, bound=8)
    assert store.write_wait() is None  # empty backlog: no waiting
    lock = hold_write_lock(path)
    try:
        for seq in range(1, 8):
            store.write([event(seq)])
        assert store.write_backlog == 7
        assert store.write_wait() is None  # below the bound
        store.write([event(8)])
        wait = store.write_wait()
        assert wait is not None
        assert not wait.done()
        await asyncio.sleep(0.05)
        assert not wait.done()  # the writer cannot commit: still waiting
    finally:
        lock.rollback()
        lock.close()
    await asyncio.wait_for(wait, 10)  # commits bring the backlog down: released
    assert store.write_backlog < 8
    await store.flush()
    assert store.write_backlog == 0
    assert seqs(await store.read_events(0, 100)) == list(range(1, 9))
    await store.close()


async def test_a_failed_store_releases_waiting_producers(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path, bound=4)
    store.write([event(1)])
    await store.flush()
    assert store._conn is not None
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
    store.write([event(s, payload=None) for s in range(2, 3000)])
    wait = store.write_wait()
    assert wait is not None
    await asyncio.wait_for(wait, 10)  # released by the failure, not left hanging
    with pytest.raises(StoreFailure):
        store.write([event(2)])  # the producer's next write says why
    assert store.write_wait() is None
    with pytest.raises(StoreFailure):
        await store.close()


async def test_close_releases_waiting_producers(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path, bound=2)
    lock = hold_write_lock(path)
    store.write([event(1), event(2), event(3)])
    wait = store.write_wait()
    assert wait is not None
    lock.rollback()
    lock.close()
    await store.close()  # commits what was written, then nobody is left waiting
    assert wait.done()


def test_the_bound_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_write_backlog"):
        SqliteStore(tmp_path / "x.db", max_write_backlog=0)
