"""The SQLite event log as chunks (schema version 2: one row per worker per transaction,
``_sqlite_chunks``), at its edges, on real files: transactions that interleave several workers,
reads that start or stop in the middle of a chunk, a worker's events spread over many
transactions, retention that cuts across a chunk (by count and by age; the hidden events never
come back, not even after a reopen), a deleted worker's events, and kill -9 of a writer process
between chunks. Every read is checked against the plain list of events written."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from serving import eventually
from store_samples import event, seqs
from test_sqlite_store import REPO_ROOT

from runtime_server.model import Event, TextDelta
from runtime_server.store import DeleteWorkerData, PutWorker, SqliteStore


async def opened(path: Path, **options: object) -> SqliteStore:
    options.setdefault("retention_interval", 3600.0)
    store = SqliteStore(path, **options)  # type: ignore[arg-type]
    await store.open("rt-chunks")
    return store


async def check_every_read(store: SqliteStore, events: list[Event]) -> None:
    """Every cursor and limit, by seq and by worker, reads exactly the plain list's slice."""
    workers = sorted({e.worker_id for e in events})
    top = events[-1].seq if events else 0
    for after in range(0, top + 1):
        for limit in (1, 2, 5, 1000):
            want = [e for e in events if e.seq > after][:limit]
            assert await store.read_events(after, limit) == want, (after, limit)
            for w in workers:
                mine = [e for e in events if e.seq > after and e.worker_id == w][:limit]
                assert await store.read_events(after, limit, w) == mine, (after, limit, w)


def rows(path: Path) -> list[tuple[int, int, str, int]]:
    conn = sqlite3.connect(path)
    try:
        return list(
            conn.execute(
                "SELECT last_seq, tx_first, worker_id, events FROM event_chunks ORDER BY 1"
            )
        )
    finally:
        conn.close()


async def test_interleaved_workers_in_one_transaction(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    pattern = ["a", "a", "b", "c", "a", "b", "b", "c", "a"]
    events = [event(i + 1, worker_id=w, run_id=f"r{w}{i // 4}") for i, w in enumerate(pattern)]
    store.write(events)  # one transaction: three overlapping chunks
    await store.flush()
    try:
        assert rows(path) == [(8, 1, "c", 2), (9, 1, "a", 4)] or rows(path) == [
            (7, 1, "b", 3),
            (8, 1, "c", 2),
            (9, 1, "a", 4),
        ]
        await check_every_read(store, events)
    finally:
        await store.close()
    store = await opened(path)  # and the same from a reopened file
    try:
        assert store.oldest_seq() == 1
        await check_every_read(store, events)
    finally:
        await store.close()


async def test_a_worker_spread_over_many_transactions(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    events: list[Event] = []
    seq = 0
    try:
        for tx in range(12):
            batch = []
            for i in range(1 + tx % 4):
                seq += 1
                batch.append(event(seq, worker_id="w1" if (tx + i) % 3 else "w2"))
            store.write(batch)
            await store.flush()
            events += batch
        assert len(rows(path)) > 12  # one row per worker per transaction
        await check_every_read(store, events)
    finally:
        await store.close()


async def test_a_long_stretch_is_split_into_chunks(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    events = [event(s, worker_id="w1" if s % 50 else "w2") for s in range(1, 701)]
    store.write(events)
    await store.flush()
    try:
        assert max(n for *_, n in rows(path)) == 256  # CHUNK_MAX_EVENTS
        for after in (0, 1, 255, 256, 257, 511, 600, 699):
            for limit in (1, 100, 1000):
                want = [e for e in events if e.seq > after][:limit]
                assert await store.read_events(after, limit) == want
                mine = [e for e in want if e.worker_id == "w2"]
                got = await store.read_events(after, limit, "w2")
                assert got[: len(mine)] == mine
    finally:
        await store.close()


async def test_retention_by_count_cuts_across_a_chunk(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path, retention_events=5, retention_interval=0.0)
    events = [event(s, worker_id="w1" if s % 3 else "w2") for s in range(1, 13)]
    store.write(events)  # one transaction, two chunks overlapping 1..12
    await store.flush()
    try:
        await eventually(lambda: store.stats.events_deleted == 7, within=30, what="retention")
        assert store.oldest_seq() == 8
        kept = events[7:]
        await check_every_read(store, kept)  # never an event below the floor
        assert len(rows(path)) == 2  # both chunks straddle the floor: hidden, not deleted
    finally:
        await store.close()
    store = await opened(path, retention_events=5, retention_interval=0.0)
    try:
        assert store.oldest_seq() == 8  # the floor is in the file
        await check_every_read(store, kept)
        store.write([event(13)])  # the next cut deletes the rows wholly below it
        await store.flush()
        await eventually(lambda: store.oldest_seq() == 9, within=30, what="retention")
        await check_every_read(store, [*kept[1:], event(13)])
    finally:
        await store.close()


async def test_retention_by_age_cuts_across_a_chunk(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path, retention_seconds=3600.0, retention_interval=0.0)
    old = [event(s, time=1.0) for s in range(1, 6)]
    young = [event(s, time=4e9) for s in range(6, 9)]  # (far in the future: never expires)
    store.write([*old, *young])  # one chunk, half of it expired
    await store.flush()
    try:
        await eventually(lambda: store.oldest_seq() == 6, within=30, what="age retention")
        await check_every_read(store, young)
    finally:
        await store.close()


async def test_a_deleted_workers_events_stay_readable(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    events = [event(s, worker_id=("w1", "w2")[s % 2]) for s in range(1, 9)]
    store.write(events[:4], [PutWorker_("w1"), PutWorker_("w2")])
    store.write(events[4:], [DeleteWorkerData("w1")])
    await store.flush()
    try:
        await check_every_read(store, events)  # its events age out; they are not deleted with it
    finally:
        await store.close()
    store = await opened(path)
    try:
        state = await store.reload()
        assert [w.worker_id for w in state.workers] == ["w2"]
        await check_every_read(store, events)
    finally:
        await store.close()


def PutWorker_(worker_id: str) -> PutWorker:
    from store_samples import worker

    return PutWorker(worker(worker_id))


def _run_child_until_killed(path: Path, reports: int) -> list[int]:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sqlite_chunks_kill_child.py")), str(path)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
    )
    assert child.stdout is not None
    reported: list[int] = []
    try:
        assert child.stdout.readline().strip() == b"ready"
        while len(reported) < reports:
            line = child.stdout.readline()
            assert line, "the child exited early"
            reported.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return reported + [int(line) for line in rest.split()]


async def test_kill_9_between_chunks_loses_no_reported_event(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    reported = await asyncio.to_thread(_run_child_until_killed, path, 200)
    store = await opened(path)
    try:
        got = await store.read_events(0, 1_000_000)
        top = got[-1].seq
        assert top >= max(reported)
        # the whole log, in order, without a gap; by worker the same events
        want = [
            Event(s, float(s), f"w{s % 3}", f"r{s // 10}", TextDelta(f"{s}"))
            for s in range(1, top + 1)
        ]
        assert got == want
        for w in ("w0", "w1", "w2"):
            assert await store.read_events(0, 1_000_000, w) == [e for e in want if e.worker_id == w]
        assert store._event_count == top  # the counters, completed at open, are exact
        assert seqs(await store.read_events(top - 5, 3)) == [top - 4, top - 3, top - 2]
        store.write([Event(top + 1, 1.0, "w0", "r", TextDelta("after"))])
        await store.flush()
        assert seqs(await store.read_events(top, 10)) == [top + 1]
    finally:
        await store.close()
