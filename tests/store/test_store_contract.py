"""The Store contract: every test here runs against every backend (see ``make_store``)."""

from __future__ import annotations

import asyncio
import random
import time

from store_samples import StoreFactory, all_payloads, event, seqs, worker

from runtime_server.model import Event, WorkerDeleted
from runtime_server.store import DeleteWorkerData, PutWorker


async def test_empty_store(make_store: StoreFactory) -> None:
    store = await make_store()
    assert store.oldest_seq() == 0
    assert await store.read_events(0, 10) == []
    await store.flush()  # nothing written: returns at once


async def test_events_round_trip_in_order(make_store: StoreFactory) -> None:
    store = await make_store()
    written = [event(i + 1, payload=p) for i, p in enumerate(all_payloads())]
    store.write(written[:3])
    store.write(written[3:4], [PutWorker(worker())])
    store.write(written[4:])
    await store.flush()
    assert await store.read_events(0, 1000) == written  # every payload type, exactly
    assert store.oldest_seq() == 1


async def test_listener_reports_monotonic_seqs_after_commit(make_store: StoreFactory) -> None:
    store = await make_store()
    reported: list[int] = []
    store.set_commit_listener(reported.append)
    seq = 0
    for n in range(60):
        batch = [event(seq + i + 1) for i in range(n % 4 + 1)]
        seq += len(batch)
        store.write(batch)
        if n % 7 == 0:
            await asyncio.sleep(0)
    store.write([], [PutWorker(worker())])  # a batch without events reports nothing new
    await store.flush()
    assert reported, "the listener was never called"
    assert reported == sorted(set(reported)), "reports must strictly increase"
    assert reported[-1] == seq
    # a reported seq is readable: it was committed before it was reported
    assert seqs(await store.read_events(reported[0] - 1, 1)) == [reported[0]]


async def test_read_events_filters_and_limits(make_store: StoreFactory) -> None:
    store = await make_store()
    store.write([event(s, worker_id="a" if s % 3 else "b") for s in range(1, 31)])
    await store.flush()
    assert seqs(await store.read_events(0, 5)) == [1, 2, 3, 4, 5]
    assert seqs(await store.read_events(27, 100)) == [28, 29, 30]
    assert await store.read_events(30, 100) == []
    assert await store.read_events(99, 100) == []
    assert seqs(await store.read_events(0, 4, "b")) == [3, 6, 9, 12]
    assert seqs(await store.read_events(12, 100, "b")) == [15, 18, 21, 24, 27, 30]
    assert seqs(await store.read_events(10, 3, "a")) == [11, 13, 14]
    assert await store.read_events(0, 10, "nobody") == []


async def test_retention_by_count(make_store: StoreFactory) -> None:
    store = await make_store(retention_events=10)
    for s in range(1, 26):
        store.write([event(s)])
    await store.flush()
    assert store.oldest_seq() == 16
    assert seqs(await store.read_events(0, 100)) == list(range(16, 26))
    assert seqs(await store.read_events(3, 2)) == [16, 17]


async def test_retention_by_age(make_store: StoreFactory) -> None:
    store = await make_store(retention_seconds=60)
    old, fresh = time.time() - 3600, time.time()
    store.write([event(s, time=old) for s in range(1, 6)])
    store.write([event(s, time=fresh) for s in range(6, 8)])
    await store.flush()
    assert store.oldest_seq() == 6
    assert seqs(await store.read_events(0, 100)) == [6, 7]


async def test_concurrent_writers_and_readers(make_store: StoreFactory) -> None:
    """Many producer tasks (seqs assigned in write order, as the Runtime does) and readers that
    read during the writes: a reader only ever sees a gap-free prefix of the log, in order."""
    store = await make_store()
    reported: list[int] = []
    store.set_commit_listener(reported.append)
    rng = random.Random(7)
    next_seq = 0
    writers_done = asyncio.Event()
    total = 40 * 30

    async def producer(worker_id: str) -> None:
        nonlocal next_seq
        for _ in range(30):
            next_seq += 1
            store.write([event(next_seq, worker_id=worker_id)])
            if rng.random() < 0.5:
                await asyncio.sleep(0)

    async def reader(worker_id: str) -> int:
        reads = 0
        while True:
            done = writers_done.is_set()
            got = await store.read_events(0, total + 1)
            assert seqs(got) == list(range(1, len(got) + 1))
            mine = await store.read_events(0, total + 1, worker_id)
            assert all(e.worker_id == worker_id for e in mine)
            assert seqs(mine) == sorted(seqs(mine))
            reads += 1
            if done:
                return reads
            await asyncio.sleep(0)  # the memory store's reads never suspend

    readers = [asyncio.create_task(reader(f"w{i}")) for i in range(4)]
    await asyncio.gather(*(producer(f"w{i % 8}") for i in range(40)))
    await store.flush()
    writers_done.set()
    assert all(n >= 1 for n in await asyncio.gather(*readers))
    everything = await store.read_events(0, total + 10)
    assert seqs(everything) == list(range(1, total + 1))
    assert reported[-1] == total
    assert reported == sorted(set(reported))


async def test_delete_worker_data_keeps_events(make_store: StoreFactory) -> None:
    store = await make_store()
    store.write([event(1, worker_id="w1")], [PutWorker(worker("w1"))])
    store.write([event(2, worker_id="w1", payload=WorkerDeleted())], [DeleteWorkerData("w1")])
    await store.flush()
    got: list[Event] = await store.read_events(0, 10, "w1")
    assert seqs(got) == [1, 2]  # the worker's events age out; they are not deleted with it
    assert got[1].payload == WorkerDeleted()


async def test_close_commits_and_is_idempotent(make_store: StoreFactory) -> None:
    store = await make_store()
    store.write([event(1)])
    await store.close()
    await store.close()  # idempotent
