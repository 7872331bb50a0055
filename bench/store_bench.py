"""Measure the SQLite store: durable events/s with group commit, publish latency, open() time.

    python -m bench.store_bench [--events 200000] [--producers 64] [--open-events 1000000]

* throughput: ``--producers`` asyncio tasks write small TextDelta events (one per write(), as the
  Runtime does for deltas, yielding to the loop after each) until ``--events`` are durable
  (``flush()`` returned), in ``process`` and ``power`` durability;
* publish latency: write() call -> commit listener report of that seq, at saturation (the run
  above: it measures the backlog), at a light paced load, and at ``--rate`` events/s;
* restart: open() of a file with ``--open-events`` events (plus workers, runs, transcripts), and
  the time until the first reads of the oldest and newest events returned ("serving").

Not a test: figures depend on the machine, its disk and its noise. Targets from the issue:
>= 20,000 durable events/s in process mode; restart with 1M events serving <= 3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from engine import Message, Role
from runtime_server.model import (
    Event,
    Run,
    RunState,
    TextDelta,
    TranscriptEntry,
    Worker,
    WorkerState,
)
from runtime_server.store import AppendTranscript, Durability, PutRun, PutWorker, SqliteStore


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


class _Latency:
    """write() time per seq, and the time the listener first covered it."""

    def __init__(self, n: int) -> None:
        self.written = [0.0] * (n + 1)
        self.reported = [0.0] * (n + 1)
        self._last = 0

    def listener(self, seq: int) -> None:
        t = time.perf_counter()
        for s in range(self._last + 1, seq + 1):
            self.reported[s] = t
        self._last = seq

    def millis(self) -> list[float]:
        return [(r - w) * 1000 for w, r in zip(self.written[1:], self.reported[1:], strict=True)]


@dataclass(frozen=True)
class Throughput:
    events_per_s: float
    p50_ms: float
    p99_ms: float


@dataclass(frozen=True)
class Latency:
    p50_ms: float
    p99_ms: float


async def throughput(
    directory: Path, durability: Durability, events: int, producers: int
) -> Throughput:
    store = SqliteStore(directory / f"throughput-{durability}.db", durability=durability)
    await store.open("bench")
    lat = _Latency(events)
    store.set_commit_listener(lat.listener)
    next_seq = 0
    per_producer = events // producers

    async def producer(index: int) -> None:
        nonlocal next_seq
        worker_id = f"w{index}"
        for _ in range(per_producer + (1 if index < events % producers else 0)):
            next_seq += 1
            lat.written[next_seq] = time.perf_counter()
            store.write([Event(next_seq, time.time(), worker_id, "r1", TextDelta("tok "))])
            await asyncio.sleep(0)

    start = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(producers)))
    await store.flush()
    elapsed = time.perf_counter() - start
    stats = store.stats
    await store.close()
    ms = lat.millis()
    print(
        f"throughput  {durability:7s}: {events / elapsed:9,.0f} durable events/s "
        f"({events:,} events, {producers} producers, {elapsed:.2f} s; "
        f"{stats.transactions:,} transactions, {stats.events / stats.transactions:,.0f} each)"
    )
    print(
        f"latency     {durability:7s}: saturated p50 {_pct(ms, 0.5):7.2f} ms  "
        f"p99 {_pct(ms, 0.99):7.2f} ms"
    )
    return Throughput(events / elapsed, _pct(ms, 0.5), _pct(ms, 0.99))


async def paced_latency(directory: Path, durability: Durability, events: int) -> Latency:
    store = SqliteStore(directory / f"paced-{durability}.db", durability=durability)
    await store.open("bench")
    lat = _Latency(events)
    store.set_commit_listener(lat.listener)
    for seq in range(1, events + 1):
        lat.written[seq] = time.perf_counter()
        store.write([Event(seq, time.time(), "w1", "r1", TextDelta("tok "))])
        await asyncio.sleep(0.001)  # ~1,000 events/s: a few busy workers streaming
    await store.flush()
    await store.close()
    ms = lat.millis()
    print(
        f"latency     {durability:7s}: paced     p50 {_pct(ms, 0.5):7.2f} ms  "
        f"p99 {_pct(ms, 0.99):7.2f} ms  (mean {statistics.fmean(ms):.2f} ms, {events:,} events)"
    )
    return Latency(_pct(ms, 0.5), _pct(ms, 0.99))


async def loaded_latency(
    directory: Path, durability: Durability, rate: int, seconds: float, producers: int
) -> Latency:
    """``producers`` tasks together writing ``rate`` events/s: a busy Runtime below saturation."""
    events = int(rate * seconds)
    store = SqliteStore(directory / f"loaded-{durability}.db", durability=durability)
    await store.open("bench")
    lat = _Latency(events)
    store.set_commit_listener(lat.listener)
    next_seq = 0
    start = time.perf_counter()

    async def producer(index: int) -> None:
        nonlocal next_seq
        for n in range(events // producers):
            next_seq += 1
            lat.written[next_seq] = time.perf_counter()
            store.write([Event(next_seq, time.time(), f"w{index}", "r1", TextDelta("tok "))])
            # sleep until this producer's next slot, so the total stays at ``rate``
            due = start + (n + 1) * producers / rate
            await asyncio.sleep(max(0.0, due - time.perf_counter()))

    await asyncio.gather(*(producer(i) for i in range(producers)))
    await store.flush()
    elapsed = time.perf_counter() - start
    await store.close()
    ms = lat.millis()[:next_seq]
    print(
        f"latency     {durability:7s}: at {next_seq / elapsed:,.0f}/s p50 {_pct(ms, 0.5):7.2f} ms  "
        f"p99 {_pct(ms, 0.99):7.2f} ms  ({producers} producers, {next_seq:,} events)"
    )
    return Latency(_pct(ms, 0.5), _pct(ms, 0.99))


async def build_log(path: Path, events: int, workers: int, entries: int) -> None:
    store = SqliteStore(path, retention_events=max(events, 1))
    await store.open("bench")
    seq = 0
    for w in range(workers):
        wid = f"worker-{w:05d}"
        worker = Worker(wid, "bench", WorkerState.IDLE, "echo", created_at=time.time())
        run = Run(f"run-{w:05d}", wid, RunState.COMPLETED, time.time(), input_text="hi")
        transcript = [
            AppendTranscript(
                TranscriptEntry(wid, i, run.run_id, time.time(), Message(Role.USER, "x" * 200))
            )
            for i in range(entries)
        ]
        store.write([], [PutWorker(worker), PutRun(run), *transcript])
    while seq < events:
        batch = [
            Event(s, time.time(), f"worker-{s % workers:05d}", "r", TextDelta("tok "))
            for s in range(seq + 1, min(events, seq + 1000) + 1)
        ]
        seq = batch[-1].seq
        store.write(batch)
        if seq % 50_000 == 0:
            await store.flush()  # keep the queue (and memory) bounded
    await store.close()


async def reopen(path: Path, events: int) -> None:
    start = time.perf_counter()
    store = SqliteStore(path, retention_events=max(events, 1))
    state = await store.open("bench")
    opened = time.perf_counter()
    oldest = await store.read_events(store.oldest_seq() - 1, 1000)
    newest = await store.read_events(state.last_seq - 1000, 1000)
    one_worker = await store.read_events(0, 100, state.workers[-1].worker_id)
    serving = time.perf_counter()
    await store.close()
    assert len(oldest) == len(newest) == 1000
    assert one_worker
    size = await asyncio.to_thread(lambda: path.stat().st_size)
    entries = sum(len(t) for t in state.transcripts.values())
    print(
        f"restart     {events:,} events ({size / 1e6:,.0f} MB, "
        f"{len(state.workers):,} workers, {entries:,} transcript entries): "
        f"open() {(opened - start) * 1000:.0f} ms, serving (first reads done) "
        f"{(serving - start) * 1000:.0f} ms  [page cache warm]"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--producers", type=int, default=64)
    parser.add_argument("--paced-events", type=int, default=2_000)
    parser.add_argument("--rate", type=int, default=20_000, help="events/s of the loaded run")
    parser.add_argument("--open-events", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None, help="where to put the files (a tmp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="store-bench-", dir=args.dir) as tmp:
        directory = Path(tmp)
        for durability in ("process", "power"):
            await throughput(directory, durability, args.events, args.producers)
            await paced_latency(directory, durability, args.paced_events)
            await loaded_latency(directory, durability, args.rate, 3.0, args.producers)
        path = directory / "restart.db"
        start = time.perf_counter()
        await build_log(path, args.open_events, workers=1000, entries=20)
        print(f"(built the {args.open_events:,}-event log in {time.perf_counter() - start:.1f} s)")
        await reopen(path, args.open_events)


if __name__ == "__main__":
    asyncio.run(main())
