"""Section ``store`` (issue 4): the SQLite store, reusing ``bench/store_bench.py``.

* durable events/s with group commit (``process`` durability): ``store_bench.throughput`` (64
  producer tasks, one TextDelta per write, until flushed); baseline: the same producers writing to
  the memory store;
* publish latency (write -> commit reported) at a steady 5,000 events/s, p50 / p99;
* end-to-end runs/s (the ``grpc`` section's runs/s: SendInput -> RunFinished received, echo,
  sequential) on ``serve --store sqlite`` vs ``serve --store memory``;
* restart: time from starting ``worker-runtime serve`` to health SERVING (checked over gRPC) on a
  data dir whose log holds 1,000,000 events (built in bulk through SqliteStore, 1,000 workers with
  20 transcript entries each), vs the same on an empty data dir. Page cache warm.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from bench import store_bench
from bench._common import Row, runtime_argv, say, show, start_server, stop_server
from bench._grpc import RunLoop, RuntimeDriver, alternate
from runtime_server.model import Event, TextDelta
from runtime_server.store import MemoryStore

SECTION = "store"


@dataclass(frozen=True)
class Sizes:
    events: int
    runs: int
    restart_events: int
    reps: int


FULL = Sizes(events=200_000, runs=600, restart_events=1_000_000, reps=3)
QUICK = Sizes(events=50_000, runs=200, restart_events=1_000_000, reps=3)


async def memory_throughput(events: int, producers: int) -> float:
    """store_bench.throughput's producers, writing to the memory store (no disk)."""
    store = MemoryStore(retention_events=events)
    await store.open("bench")
    next_seq = 0
    per_producer = events // producers

    async def producer(index: int) -> None:
        nonlocal next_seq
        worker_id = f"w{index}"
        for _ in range(per_producer + (1 if index < events % producers else 0)):
            next_seq += 1
            store.write([Event(next_seq, time.time(), worker_id, "r1", TextDelta("tok "))])
            await asyncio.sleep(0)

    start = time.perf_counter()
    await asyncio.gather(*(producer(i) for i in range(producers)))
    await store.flush()
    return events / (time.perf_counter() - start)


def _remove(directory: Path, patterns: tuple[str, ...]) -> None:
    for pattern in patterns:
        for f in directory.glob(pattern):
            f.unlink()


async def serving_time(data_dir: Path) -> float:
    """Seconds from starting ``serve`` on ``data_dir`` to grpc health SERVING."""
    server = await start_server(runtime_argv("--store", "sqlite", "--data-dir", str(data_dir)))
    try:
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            while True:
                try:
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=5)
                    if reply.status == health_pb2.HealthCheckResponse.SERVING:
                        return time.perf_counter() - server.started
                except grpc.aio.AioRpcError:
                    pass
                await asyncio.sleep(0.01)
    finally:
        await stop_server(server)


async def run(quick: bool) -> list[Row]:
    s = QUICK if quick else FULL
    durable = Row(SECTION, "durable events/s, group commit (process)", "events/s", kind="abs",
                  target=20_000,
                  note="baseline: the same 64 producers writing to the memory store")  # fmt: skip
    p50 = Row(SECTION, "publish latency p50 at 5,000 events/s", "ms", kind="info")
    p99 = Row(SECTION, "publish latency p99 at 5,000 events/s", "ms", kind="info")
    sat = Row(SECTION, "publish latency p99 at saturation", "ms", kind="info",
              note="the backlog of the durable events/s run")  # fmt: skip
    runs = Row(SECTION, "runs/s sqlite vs memory (SendInput->RunFinished)", "runs/s",
               target=0.8, note="baseline: serve --store memory; product: --store sqlite; "
               "alternated in 4 slices")  # fmt: skip
    restart = Row(SECTION, f"restart with {s.restart_events:,} events: start->SERVING", "s",
                  kind="abs", target=3.0, direction="max")  # fmt: skip

    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        directory = Path(tmp)
        for rep in range(1, s.reps + 1):
            durable.baseline.append(await memory_throughput(s.events, 64))
            result = await store_bench.throughput(directory, "process", s.events, 64)
            durable.product.append(result.events_per_s)
            sat.product.append(result.p99_ms)
            show(durable, rep)
            latency = await store_bench.loaded_latency(
                directory, "process", 5_000, 1.0 if quick else 2.0, 16
            )
            p50.product.append(latency.p50_ms)
            p99.product.append(latency.p99_ms)
            await asyncio.to_thread(_remove, directory, ("throughput-*", "loaded-*"))

        for rep in range(1, s.reps + 1):
            data = directory / f"runs-{rep}"
            memory = await start_server(runtime_argv("--store", "memory"))
            sqlite = await start_server(runtime_argv("--store", "sqlite", "--data-dir", str(data)))
            try:
                mem_driver, sql_driver = RuntimeDriver(memory.target), RuntimeDriver(sqlite.target)
                try:
                    await mem_driver.runs(20)
                    await sql_driver.runs(20)
                    mem_loop = await RunLoop.create(mem_driver.client)
                    sql_loop = await RunLoop.create(sql_driver.client)
                    rate_mem, rate_sql = await alternate(mem_loop.runs, sql_loop.runs, s.runs)
                    await mem_loop.close()
                    await sql_loop.close()
                    runs.baseline.append(rate_mem)
                    runs.product.append(rate_sql)
                finally:
                    await mem_driver.close()
                    await sql_driver.close()
            finally:
                await stop_server(memory)
                await stop_server(sqlite)
            show(runs, rep)

        full = directory / "full"
        full.mkdir()
        start = time.perf_counter()
        await store_bench.build_log(
            full / "runtime.sqlite3", s.restart_events, workers=1000, entries=20
        )
        size = (full / "runtime.sqlite3").stat().st_size
        say(
            f"  [{SECTION}] built the {s.restart_events:,}-event log ({size / 1e6:,.0f} MB) in "
            f"{time.perf_counter() - start:.0f} s"
        )
        for rep in range(1, s.reps + 1):
            empty = directory / f"empty-{rep}"
            restart.baseline.append(await serving_time(empty))
            restart.product.append(await serving_time(full))
            shutil.rmtree(empty, ignore_errors=True)
            show(restart, rep)
        restart.note = (
            f"baseline: the same on an empty data dir; {size / 1e6:,.0f} MB file, 1,000 workers, "
            "20,000 transcript entries, page cache warm; includes interpreter start and imports"
        )
    p50.note = p99.note = "write() -> commit reported, 16 producers, process durability"
    return [durable, p50, p99, sat, runs, restart]
