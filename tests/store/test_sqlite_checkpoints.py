"""The SQLite store's checkpoints are throttled yet keep the WAL bounded.

Throttled: while commits continue, the checkpointer runs once per ``CHECKPOINT_PAUSE`` (each
checkpoint copies every page the WAL holds and syncs both files, so fewer checkpoints copy the
same hot pages fewer times). Bounded: once the writer's estimate of what it added to the WAL
passes ``CHECKPOINT_BYTES`` it ends the pause early, so a fast writer is still checkpointed and
the WAL restarts from its beginning.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from serving import eventually
from store_samples import event

from runtime_server.model import TextDelta
from runtime_server.store import SqliteStore


async def opened(path: Path, *, pause: float, wal_bytes: int = 16 << 20) -> SqliteStore:
    store = SqliteStore(path, retention_interval=3600.0)
    store._checkpoint_pause = pause  # (the defaults: 1 s, 16 MB)
    store._checkpoint_bytes = wal_bytes
    await store.open("rt-ckpt")
    return store


async def test_commits_within_one_pause_take_one_checkpoint(tmp_path: Path) -> None:
    store = await opened(tmp_path / "runtime.db", pause=60.0)
    try:
        for seq in range(1, 41):  # 40 transactions, each waited for
            store.write([event(seq)])
            await store.flush()
        await eventually(lambda: store.stats.checkpoints >= 1, what="the first checkpoint")
        await asyncio.sleep(0.3)  # (the old checkpointer ran again after 0.25 s)
        assert store.stats.transactions == 40
        assert store.stats.checkpoints == 1  # the rest wait for the pause
    finally:
        await store.close()


async def test_a_fast_writer_is_checkpointed_before_the_pause_ends(tmp_path: Path) -> None:
    # A pause far longer than the test, and a small bound: only the bound can bring the
    # checkpoints that keep the WAL from growing with every commit.
    path = tmp_path / "runtime.db"
    wal = path.with_name(path.name + "-wal")
    store = await opened(path, pause=600.0, wal_bytes=256 * 1024)
    text = TextDelta("x" * 2000)  # about two events to a page: many frames per transaction
    seq = 0
    largest = 0
    try:
        for _ in range(300):
            store.write([event(seq + i + 1, payload=text) for i in range(20)])
            seq += 20
            await store.flush()
            largest = max(largest, wal.stat().st_size)
            if store.stats.checkpoints >= 4:
                break
            await asyncio.sleep(0.01)
        assert store.stats.checkpoints >= 4, "the WAL's size never brought a checkpoint"
        # 300 transactions of ~10 pages each would make a WAL of ~12 MB without checkpoints;
        # with them it restarts after every few (generous: the checkpointer may lag on a busy box)
        assert largest < 8 * 1024 * 1024, largest
    finally:
        await store.close()
