"""Section ``peer`` (issue 15 item 6): the peer comparison's workload, against bare grpc.aio.

The workload of the published side-by-side comparison: an echo agent answering a 10-word input
(10 TextDelta chunks plus the terminal event), "streamed runs" at concurrency 1 and 16.

* product: one worker per concurrent client, each with one subscription opened once; a run is
  ``SendInput`` (10 words) then that run's ``RunFinished`` received on the subscription. Both
  subscription RPCs: ``SubscribeEventBatches`` (the client's default, ``batched=True``) and the
  per-event ``SubscribeEvents`` (what grpcurl and other-language clients use). Both stores: the
  memory store and the SQLite store (``process`` durability, the ``serve`` default).
* baseline: the bare grpc.aio echo (``bench._bare``) streaming 11 events per call — the run's
  10 chunks and its terminal event, one message each, each built fresh — at the same
  concurrency. A bare streamed run is one server-streaming call.

* shape (the limit, ``bench.shape``): a bare grpc.aio server with the product's exact RPC shape
  and no logic: a unary call with SendInput's request and reply bytes, then the run's events'
  bytes pushed on a stream the client opened once per worker — 18 messages on the per-event
  shape, 1 ``EventBatch`` message on the batched one (the fewest any implementation can send;
  the product's own count is reported in the ``messages per run`` rows). All bytes come from a
  real run of the memory-store server, captured once per section and sent pre-encoded. Its
  column ``limit`` (shape / bare) is what a runtime with no cost of its own would reach against
  each target; ``of limit`` (product / shape) is how close the product is to that.

Bare, shape and product alternate in 4 slices inside every measurement (``_grpc.alternate``), and
every repetition starts fresh servers, so a burst of noise on this shared machine hits both.

Server CPU per run: the server process's CPU time (user + system of every thread, from
``/proc/<pid>/task/*/schedstat``, nanoseconds) over the slices it was measured in, divided by the
runs; the baseline is the bare server's CPU per 11-event stream in the same slices.

The per-event stream's server CPU per run, and the client's CPU per run on both streams (the
bench process's CPU — the typed client's loop and grpc's poller thread — over the same slices,
bare and shape clients alike) are reported without targets: they show where the per-event
stream's runs/s go on each end.

Publish latency at saturation: 64 producers (as the ``store`` section's throughput run) write
TextDelta events to a SQLite store as fast as its bounded write queue admits them; p99 of
write() -> commit reported. The baseline column is the same producers ignoring the bound (the
unbounded behaviour the bound replaces), for comparison; the target is on the product figure.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench import shape as shape_mod
from bench._bare import BareClient
from bench._common import Row, ServerProcess, running, runtime_argv, say, show
from bench._grpc import _until_finished, alternate_all, words
from runtime_client import Event, RuntimeClient

SECTION = "peer"
WORDS = 10  # the peer comparison's echo: 10 chunks + the terminal event
BARE_EVENTS = WORDS + 1


@dataclass(frozen=True)
class Sizes:
    runs_c1: int
    runs_c16: int
    saturation_events: int
    reps: int


FULL = Sizes(runs_c1=600, runs_c16=1600, saturation_events=100_000, reps=3)
QUICK = Sizes(runs_c1=200, runs_c16=480, saturation_events=30_000, reps=3)
COUNT_RUNS = {1: 60, 16: 320}  # runs whose SubscribeEventBatches messages are counted, per c


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far (ns; Linux schedstat). Threads that ended are
    not counted: the servers' threads (grpc pollers, the SQLite writer) live as long as they do."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        try:
            total += int(stat.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended meanwhile
    return total


class _Metered:
    """Wraps ``work(n) -> count`` so the CPU the server spends during each call is added up, and
    the bench process's own (its client: the loop and grpc's poller thread; the slices alternate,
    so only this client runs meanwhile)."""

    def __init__(self, pid: int, work: Callable[[int], Awaitable[int]]) -> None:
        self.pid = pid
        self.work = work
        self.cpu = 0
        self.client_cpu = 0
        self.count = 0

    async def __call__(self, n: int) -> int:
        before, client_before = cpu_ns(self.pid), time.process_time_ns()
        done = await self.work(n)
        self.cpu += cpu_ns(self.pid) - before
        self.client_cpu += time.process_time_ns() - client_before
        self.count += done
        return done

    @property
    def us_per_op(self) -> float:
        return self.cpu / 1000 / max(1, self.count)

    @property
    def client_us_per_op(self) -> float:
        return self.client_cpu / 1000 / max(1, self.count)


class StreamedRuns:
    """``concurrency`` workers, each with its own subscription; ``__call__(n)``: n runs spread
    over them, each SendInput(10 words) -> its RunFinished received."""

    def __init__(self, client: RuntimeClient, concurrency: int, batched: bool) -> None:
        self.client = client
        self.concurrency = concurrency
        self.batched = batched
        self.loops: list[tuple[str, AsyncGenerator[Event, None]]] = []
        self.text = words(WORDS)

    async def open(self) -> None:
        for _ in range(self.concurrency):
            created = await self.client.create_worker(profile="echo")
            wid = created.worker.worker_id
            events = self.client.subscribe(wid, after_seq=created.seq, batched=self.batched)
            self.loops.append((wid, events))

    async def close(self) -> None:
        for _, events in self.loops:
            await events.aclose()

    async def __call__(self, n: int) -> int:
        per = max(1, n // self.concurrency)

        async def one(wid: str, events: object) -> int:
            for _ in range(per):
                accepted = await self.client.send_input(wid, self.text)
                got = await _until_finished(events, accepted.run.run_id)  # type: ignore[arg-type]
                if got != WORDS:
                    raise RuntimeError(f"a run delivered {got} of {WORDS} deltas")
            return per

        done = await asyncio.gather(*(one(wid, ev) for wid, ev in self.loops))
        return sum(done)


def bare_runs(bare: BareClient, concurrency: int) -> Callable[[int], Awaitable[int]]:
    async def work(n: int) -> int:
        per = max(1, n // concurrency)

        async def one() -> int:
            for _ in range(per):
                await bare.read_stream(BARE_EVENTS)
            return per

        return sum(await asyncio.gather(*(one() for _ in range(concurrency))))

    return work


CONFIGS = [  # (store, concurrency, batched)
    (store, c, batched)
    for store in ("memory", "sqlite")
    for c in (1, 16)
    for batched in (True, False)
]


def _label(store: str, c: int, batched: bool) -> str:
    rpc = "batched" if batched else "per-event"
    return f"streamed runs/s, {store}, c={c}, {rpc}"


async def saturation(directory: Path, events: int, bounded: bool) -> float:
    """p99 (ms) of write() -> commit reported with 64 producers writing as fast as they may."""
    from bench import store_bench
    from runtime_server.model import Event, TextDelta
    from runtime_server.store import SqliteStore

    store = SqliteStore(directory / f"saturation-{bounded}-{time.monotonic_ns()}.db")
    await store.open("bench")
    lat = store_bench._Latency(events)
    store.set_commit_listener(lat.listener)
    next_seq = 0
    producers = 64
    per = events // producers
    wait = store.write_wait if bounded else None

    async def producer(index: int) -> None:
        nonlocal next_seq
        for _ in range(per + (1 if index < events % producers else 0)):
            if wait is not None:
                waiting = wait()
                if waiting is not None:
                    await waiting
            next_seq += 1
            lat.written[next_seq] = time.perf_counter()
            store.write([Event(next_seq, time.time(), f"w{index}", "r1", TextDelta("tok "))])
            await asyncio.sleep(0)

    await asyncio.gather(*(producer(i) for i in range(producers)))
    await store.flush()
    await store.close()
    return store_bench._pct(lat.millis(), 0.99)


async def run(quick: bool) -> list[Row]:
    s = QUICK if quick else FULL
    rows: dict[tuple[str, int, bool], Row] = {}
    for store, c, batched in CONFIGS:
        target = 0.8 if batched else 0.6
        rows[(store, c, batched)] = Row(
            SECTION, _label(store, c, batched), "runs/s", target=target,
            note=f"baseline: bare grpc.aio stream of {BARE_EVENTS} events per run, same c; shape: "
            f"SendInput-sized unary + the run's 18 events as "
            + ("1 batch message" if batched else "18 messages"),
        )  # fmt: skip
    cpu_rows: dict[tuple[str, int], Row] = {
        (store, c): Row(
            SECTION,
            f"server CPU per run, {store}, c={c}, batched",
            "us",
            target=1.2,
            direction="max",
            note="baseline: the bare server's CPU per 11-event stream; shape: the shape "
            "server's per run (unary + 1 batch message)",
        )
        for store in ("memory", "sqlite")
        for c in (1, 16)
    }
    # The per-event stream's CPU, both ends (no target: they show where its runs/s go), and the
    # client's CPU on the batched stream: the bench process's CPU per run in the same slices.
    pe_cpu_rows: dict[tuple[str, int], Row] = {
        (store, c): Row(
            SECTION,
            f"server CPU per run, {store}, c={c}, per-event",
            "us",
            kind="info",
            note="baseline: the bare server's CPU per 11-event stream; shape: the shape "
            "server's per run (unary + 18 messages)",
        )
        for store in ("memory", "sqlite")
        for c in (1, 16)
    }
    client_rows: dict[tuple[str, int, bool], Row] = {
        (store, c, batched): Row(
            SECTION,
            f"client CPU per run, {store}, c={c}, {'batched' if batched else 'per-event'}",
            "us",
            kind="info",
            note="the bench process's CPU (the typed RuntimeClient, its loop and grpc's poller) "
            "per run; baseline: the bare client's per 11-event stream; shape: the shape "
            "client's (raw stub, protobuf decoding only)",
        )
        for store, c, batched in CONFIGS
    }
    count_rows: dict[tuple[str, int], Row] = {
        (store, c): Row(
            SECTION,
            f"messages per run, SubscribeEventBatches, {store}, c={c}",
            "msgs",
            kind="info",
            note=f"counted on a raw subscription over {COUNT_RUNS[c]} runs (the bare stream "
            f"sends {BARE_EVENTS}, the batched shape 1; 'of limit' = product / shape)",
        )
        for store in ("memory", "sqlite")
        for c in (1, 16)
    }
    ratios_seen: dict[str, list[float]] = {}
    text = words(WORDS)
    with tempfile.TemporaryDirectory(prefix="bench-peer-shape-") as spec_dir:
        spec = Path(spec_dir) / "shape.json"
        shape: shape_mod.Shape | None = None
        for rep in range(1, s.reps + 1):
            with tempfile.TemporaryDirectory(prefix="bench-peer-") as tmp:
                servers: dict[str, ServerProcess] = {}
                async with (
                    running(["-m", "bench._bare"]) as bare_server,
                    running(runtime_argv("--store", "memory")) as mem_server,
                    running(runtime_argv("--store", "sqlite", "--data-dir", tmp)) as sql_server,
                ):
                    if shape is None:  # one real run's bytes, reused by every repetition
                        shape = await shape_mod.capture(mem_server.target, text)
                        shape.dump(spec)
                        say(f"  [{SECTION}] shape: SendInput {len(shape.request)} B -> "
                            f"{len(shape.reply)} B; {len(shape.events)} events, "
                            f"{sum(map(len, shape.events))} B")  # fmt: skip
                    servers = {"memory": mem_server, "sqlite": sql_server}
                    async with running(["-m", "bench.shape", "--spec", str(spec)]) as shape_server:
                        await _measure(
                            s, rep, shape, bare_server, shape_server, servers, rows, cpu_rows,
                            pe_cpu_rows, client_rows, ratios_seen,
                        )  # fmt: skip
                    for (store, c), cr in count_rows.items():
                        address = servers[store].target
                        cr.product.append(
                            await shape_mod.count_batches(address, c, COUNT_RUNS[c], text)
                        )
                        cr.shape.append(1)
                        show(cr, rep)

    sat = Row(SECTION, "publish latency p99 at saturation (SQLite, 64 producers)", "ms",
              kind="abs", target=250.0, direction="max")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-peer-sat-") as tmp:
        for rep in range(1, s.reps + 1):
            sat.baseline.append(await saturation(Path(tmp), s.saturation_events, bounded=False))
            sat.product.append(await saturation(Path(tmp), s.saturation_events, bounded=True))
            show(sat, rep)
    sat.note = (
        "write() -> commit reported; product: producers await the store's bounded write queue "
        "(SqliteStore.write_wait, bound store_write_backlog_events); baseline: the same "
        "producers ignoring the bound"
    )
    spread = [
        f"{name}: {min(v):.2f}-{max(v):.2f}x" for name, v in ratios_seen.items() if len(v) > 1
    ]
    if spread:
        say(f"  [{SECTION}] per-repetition ratio spread (noise): " + "; ".join(spread))
        median_spread = statistics.median(max(v) - min(v) for v in ratios_seen.values())
        say(f"  [{SECTION}] median spread of a ratio across repetitions: {median_spread:.2f}")
    return [
        *rows.values(), *cpu_rows.values(), *pe_cpu_rows.values(), *client_rows.values(),
        *count_rows.values(), sat,
    ]  # fmt: skip


async def _measure(
    s: Sizes,
    rep: int,
    shape: shape_mod.Shape,
    bare_server: ServerProcess,
    shape_server: ServerProcess,
    servers: dict[str, ServerProcess],
    rows: dict[tuple[str, int, bool], Row],
    cpu_rows: dict[tuple[str, int], Row],
    pe_cpu_rows: dict[tuple[str, int], Row],
    client_rows: dict[tuple[str, int, bool], Row],
    ratios_seen: dict[str, list[float]],
) -> None:
    """One repetition of every config: bare, shape and product in alternating slices."""
    bare = BareClient(bare_server.target)
    clients = {k: RuntimeClient(v.target, timeout=120.0) for k, v in servers.items()}
    try:
        await bare.read_stream(2000)  # warm up
        for store, c, batched in CONFIGS:
            product = StreamedRuns(clients[store], c, batched)
            limit = shape_mod.ShapeRuns(shape_server.target, shape, c, per_event=not batched)
            await product.open()
            await limit.open()
            try:
                await product(2 * c)  # warm up this path
                await limit(2 * c)
                n = s.runs_c1 if c == 1 else s.runs_c16
                a = _Metered(bare_server.pid, bare_runs(bare, c))
                m = _Metered(shape_server.pid, limit)
                b = _Metered(servers[store].pid, product)
                rate_a, rate_m, rate_b = await alternate_all([a, m, b], n)
            finally:
                await product.close()
                await limit.close()
            r = rows[(store, c, batched)]
            r.baseline.append(rate_a)
            r.product.append(rate_b)
            r.shape.append(rate_m)
            show(r, rep)
            ratios_seen.setdefault(r.name, []).append(rate_b / rate_a)
            cr = cpu_rows[(store, c)] if batched else pe_cpu_rows[(store, c)]
            cr.baseline.append(a.us_per_op)
            cr.product.append(b.us_per_op)
            cr.shape.append(m.us_per_op)
            show(cr, rep)
            cl = client_rows[(store, c, batched)]
            cl.baseline.append(a.client_us_per_op)
            cl.product.append(b.client_us_per_op)
            cl.shape.append(m.client_us_per_op)
            show(cl, rep)
    finally:
        await bare.close()
        for client in clients.values():
            await client.close()
