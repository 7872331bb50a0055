"""Section ``grpc`` (issue 2): the Runtime over gRPC against a bare grpc.aio echo.

Topology, the same for both sides: the server runs in its own process (``python -m bench._bare``
or ``worker-runtime serve --store memory``), the client in this one; 127.0.0.1, no TLS, no auth.
Each repetition starts fresh servers and measures baseline and product back to back, metric by
metric, so that noise on this shared machine hits both alike.

* runs/s: ``send_input`` (echo profile, no delay, two words) then wait for that run's RunFinished
  on a subscription opened once, sequentially, vs sequential unary echo calls/s; the shape
  baseline (``bench.shape``: a SendInput-sized unary call, then that run's events' bytes in one
  message on a stream opened once, no logic) is measured in the same slices: shape / bare is
  the limit gRPC's shape sets for this target;
* one stream: one worker echoes an input of N words; TextDelta events received by one
  subscriber / wall time from SendInput to RunFinished received, vs one bare server stream of N
  events (msgs/s);
* 100 streams: 100 workers each echo M words to their own (worker-filtered) subscriber, all
  started at once; TextDelta events received by all / wall time, vs 100 bare streams of M events;
* idle workers: RSS of the serve process before and after creating 10,000 idle workers.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from bench._bare import BareClient
from bench._common import Row, before_slice, rss_bytes, running, runtime_argv, say, show, timed
from bench.shape import ShapeRuns, capture
from runtime_client import Event, RunFinished, RuntimeClient, TextDelta

SECTION = "grpc"
RUN_TEXT = "hello world"  # a run of the runs/s row: 2 words


@dataclass(frozen=True)
class Sizes:
    runs: int
    stream_msgs: int
    streams: int
    per_stream: int
    idle_workers: int
    reps: int


FULL = Sizes(runs=600, stream_msgs=100_000, streams=100, per_stream=1000,
             idle_workers=10_000, reps=3)  # fmt: skip
QUICK = Sizes(runs=200, stream_msgs=20_000, streams=100, per_stream=200,
              idle_workers=10_000, reps=3)  # fmt: skip


# Said in the notes of the rows that compare streams: the two sides do not send alike.
BATCHED = (
    "Not like for like: the product side (client.subscribe, default batched=True, i.e. "
    "SubscribeEventBatches) carries every event ready at send time in one message, while the "
    "bare baseline sends one message per event"
)


def words(n: int) -> str:
    return " ".join(["tok"] * n)


async def _until_finished(
    events: AsyncGenerator[Event, None], run_id: str, seen: list[int] | None = None
) -> int:
    """Consume ``events`` until ``run_id`` finishes; returns the TextDelta events seen (and
    counts every event in ``seen[0]``)."""
    deltas = 0
    async for ev in events:
        if seen is not None:
            seen[0] += 1
        payload = ev.payload
        if payload.__class__ is TextDelta:
            deltas += 1
        elif isinstance(payload, RunFinished) and payload.run.run_id == run_id:
            return deltas
    raise RuntimeError("the subscription ended before the run finished")


class RunLoop:
    """One worker with one subscription; ``runs(n)``: n sequential runs, each SendInput -> its
    RunFinished received on the subscription. The worker's history grows with every run (as it
    would in use): each run's request carries the whole transcript."""

    def __init__(self, client: RuntimeClient, worker_id: str, after_seq: int) -> None:
        self.client = client
        self.worker_id = worker_id
        self.events = client.subscribe(worker_id, after_seq=after_seq)
        self.seen = [0]  # events received
        self.done = 0  # runs finished

    @classmethod
    async def create(cls, client: RuntimeClient) -> RunLoop:
        created = await client.create_worker(profile="echo")
        return cls(client, created.worker.worker_id, created.seq)

    async def runs(self, n: int) -> int:
        for _ in range(n):
            accepted = await self.client.send_input(self.worker_id, RUN_TEXT)
            await _until_finished(self.events, accepted.run.run_id, self.seen)
        self.done += n
        return n

    async def close(self) -> None:
        await self.events.aclose()


async def alternate(
    a: Callable[[int], Awaitable[int]], b: Callable[[int], Awaitable[int]], n: int, slices: int = 4
) -> tuple[float, float]:
    """Rates (ops/s) of ``a(n)`` and ``b(n)``, run in ``slices`` alternating slices, so that a
    burst of noise on the machine hits both."""
    times = [0.0, 0.0]
    counts = [0, 0]
    for _ in range(slices):
        for i, work in enumerate((a, b)):
            before_slice()
            start = time.perf_counter()
            counts[i] += await work(n // slices)
            times[i] += time.perf_counter() - start
    return counts[0] / times[0], counts[1] / times[1]


async def alternate_all(
    works: list[Callable[[int], Awaitable[int]]], n: int, slices: int = 4
) -> list[float]:
    """Rates (ops/s) of each ``work(n)``, run in ``slices`` alternating slices, so that a burst
    of noise on the machine hits all of them."""
    times = [0.0] * len(works)
    counts = [0] * len(works)
    for _ in range(slices):
        for i, work in enumerate(works):
            before_slice()
            start = time.perf_counter()
            counts[i] += await work(n // slices)
            times[i] += time.perf_counter() - start
    return [c / t for c, t in zip(counts, times, strict=True)]


class RuntimeDriver:
    def __init__(self, target: str) -> None:
        self.client = RuntimeClient(target, timeout=120.0)

    async def close(self) -> None:
        await self.client.close()

    async def runs(self, n: int) -> int:
        """``n`` sequential runs on a new worker, each SendInput -> its RunFinished received."""
        loop = await RunLoop.create(self.client)
        try:
            return await loop.runs(n)
        finally:
            await loop.close()

    async def one_stream(self, n: int) -> float:
        """Deltas/s of one worker echoing ``n`` words to one subscriber (SendInput -> finished)."""
        created = await self.client.create_worker(profile="echo")
        wid = created.worker.worker_id
        text = words(n)
        events = self.client.subscribe(wid, after_seq=created.seq)
        try:
            start = time.perf_counter()
            accepted = await self.client.send_input(wid, text)
            got = await _until_finished(events, accepted.run.run_id)
            elapsed = time.perf_counter() - start
        finally:
            await events.aclose()
        if got != n:
            raise RuntimeError(f"one stream: received {got} of {n} deltas")
        return got / elapsed

    async def many_streams(self, streams: int, per_stream: int) -> float:
        """Total deltas/s of ``streams`` workers, each echoing to its own subscriber."""
        created = await asyncio.gather(
            *(self.client.create_worker(profile="echo") for _ in range(streams))
        )
        text = words(per_stream)
        subs = [self.client.subscribe(c.worker.worker_id, after_seq=c.seq) for c in created]

        async def one(index: int) -> int:
            accepted = await self.client.send_input(created[index].worker.worker_id, text)
            return await _until_finished(subs[index], accepted.run.run_id)

        try:
            start = time.perf_counter()
            counts = await asyncio.gather(*(one(i) for i in range(streams)))
            elapsed = time.perf_counter() - start
        finally:
            for sub in subs:
                await sub.aclose()
        total = sum(counts)
        if total != streams * per_stream:
            raise RuntimeError(f"many streams: received {total} of {streams * per_stream}")
        return total / elapsed

    async def create_idle(self, n: int, concurrency: int = 32) -> None:
        remaining = iter(range(n))

        async def creator() -> None:
            for _ in remaining:
                await self.client.create_worker(profile="echo")

        await asyncio.gather(*(creator() for _ in range(concurrency)))


async def run(quick: bool) -> list[Row]:
    s = QUICK if quick else FULL
    rows = {
        "runs": Row(SECTION, "runs/s (SendInput->RunFinished) vs unary calls/s", "/s",
                    target=0.45),
        "one": Row(SECTION, f"1 stream: {s.stream_msgs:,} deltas, msgs/s", "msgs/s",
                   target=0.6),
        "many": Row(SECTION, f"{s.streams} streams x {s.per_stream:,} deltas, msgs/s",
                    "msgs/s", target=0.5),
    }  # fmt: skip
    events_per_run = 0.0
    bare_argv = ["-m", "bench._bare"]
    rt_argv = runtime_argv("--store", "memory")
    with tempfile.TemporaryDirectory(prefix="bench-grpc-shape-") as spec_dir:
        # the shape baseline: this section's 2-word run, captured once from a real server
        spec = Path(spec_dir) / "shape.json"
        async with running(rt_argv) as rt_server:
            shape = await capture(rt_server.target, RUN_TEXT)
        shape.dump(spec)
        for rep in range(1, s.reps + 1):
            async with (
                running(bare_argv) as bare_server,
                running(rt_argv) as rt_server,
                running(["-m", "bench.shape", "--spec", str(spec)]) as shape_server,
            ):
                bare = BareClient(bare_server.target)
                rt = RuntimeDriver(rt_server.target)
                try:
                    # warm up both: connections, code paths
                    await bare.unary_calls(200)
                    await bare.read_stream(2000)
                    await rt.runs(20)
                    await rt.one_stream(2000)

                    r = rows["runs"]
                    loop = await RunLoop.create(rt.client)
                    limit = ShapeRuns(shape_server.target, shape, 1, per_event=False)
                    await limit.open()
                    try:
                        await limit(20)  # warm up
                        # the same number of operations each: s.runs unary calls vs s.runs runs
                        rate_a, rate_m, rate_b = await alternate_all(
                            [bare.unary_calls, limit, loop.runs], s.runs
                        )
                    finally:
                        await loop.close()
                        await limit.close()
                    r.baseline.append(rate_a)
                    r.product.append(rate_b)
                    r.shape.append(rate_m)
                    events_per_run = loop.seen[0] / max(1, loop.done)
                    show(r, rep)

                    r = rows["one"]
                    r.baseline.append(await timed(partial(bare.read_stream, s.stream_msgs)))
                    r.product.append(await rt.one_stream(s.stream_msgs))
                    show(r, rep)

                    r = rows["many"]
                    many = partial(bare.many_streams, s.streams, s.per_stream)
                    r.baseline.append(await timed(many))
                    r.product.append(await rt.many_streams(s.streams, s.per_stream))
                    show(r, rep)
                finally:
                    await bare.close()
                    await rt.close()

    idle = Row(SECTION, f"{s.idle_workers:,} idle workers: added server RSS", "MB", kind="abs",
               target=50.0, direction="max")  # fmt: skip
    before_mb: list[float] = []
    for rep in range(1, s.reps + 1):
        async with running(rt_argv) as rt_server:
            rt = RuntimeDriver(rt_server.target)
            try:
                await rt.create_idle(100)  # warm up: connection, code paths, first allocations
                await rt.runs(5)
                await asyncio.sleep(0.2)
                before = rss_bytes(rt_server.pid)
                start = time.perf_counter()
                await rt.create_idle(s.idle_workers)
                took = time.perf_counter() - start
                await asyncio.sleep(0.2)
                after = rss_bytes(rt_server.pid)
            finally:
                await rt.close()
        before_mb.append(before / 1e6)
        idle.product.append((after - before) / 1e6)
        say(
            f"  [{SECTION}] idle workers (rep {rep}): RSS {before / 1e6:.1f} -> {after / 1e6:.1f} "
            f"MB (+{(after - before) / 1e6:.1f} MB for {s.idle_workers:,} workers, "
            f"created in {took:.1f} s)"
        )
    idle.note = (
        f"memory store (events kept in RAM); server RSS before ~{sorted(before_mb)[1]:.0f} MB"
        if len(before_mb) >= 3
        else "memory store"
    )
    out = [*rows.values(), idle]
    rows["runs"].note = (
        f"echo profile, 2 words, sequential on one worker (history grows), alternated with the "
        f"unary calls and the shape baseline in 4 slices; memory store. A run is 1 unary call + "
        f"{events_per_run:.0f} events; shape: a bare server doing that (SendInput-sized unary, "
        f"then the run's {len(shape.events)} events' bytes in 1 message on a stream opened "
        f"once). {BATCHED}"
    )
    rows["one"].note = f"TextDelta received / (SendInput .. RunFinished received). {BATCHED}"
    rows["many"].note = f"one worker-filtered subscriber per worker; all started at once. {BATCHED}"
    return out
