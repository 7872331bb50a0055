"""Section ``context`` (issue 14 item 8): a run's cost on a worker with a very long history.

One ``serve --store sqlite`` process; its data dir is built beforehand by writing through
:class:`SqliteStore` directly (driving 54,000 real runs would take longer than the rest of the
bench): one worker whose own history holds 1,000,000 events — the log of ~54,000 echo runs
(18.5 events each, as measured on the echo profile) — and the transcript those runs leave,
2 entries per run ("hello world" in, "hello world" out). The server is started on it (a restart,
so that worker's transcript is in the store, not in memory: the first run finds what it needs
there, as after any restart), then:

* runs/s: sequential runs (SendInput -> RunFinished received on a subscription opened once,
  echo profile, two words) on the long worker vs on a new worker with an empty history, on the
  same server, alternated in 10 slices per repetition; target >= 0.8x;
* CPU per run: the server process's CPU time (all threads, /proc) over each side's runs, and its
  inverse (runs per server CPU-second), the steadier figure on a loaded machine; target >= 0.8x.

Both workers use the builtin ``echo`` profile and its default context policy.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from bench._common import Row, runtime_argv, say, show, start_server, stop_server
from bench._grpc import RunLoop, RuntimeDriver, alternate
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
from runtime_server.store import AppendTranscript, PutRun, PutWorker, SqliteStore

SECTION = "context"
SLICES = 10  # alternations per repetition: bursts of load on this shared machine hit both sides
EVENTS_PER_RUN = 18.5  # an echo run of two words: queued/started/input/deltas/usage/message/...


@dataclass(frozen=True)
class Sizes:
    events: int
    runs: int
    reps: int


FULL = Sizes(events=1_000_000, runs=600, reps=3)
QUICK = Sizes(events=1_000_000, runs=200, reps=3)


async def build_long_worker(path: Path, events: int) -> tuple[str, int, int]:
    """A store holding one worker with ``events`` events and the transcript of the runs that
    would have produced them. Returns (worker_id, last seq, transcript entries)."""
    store = SqliteStore(path, retention_events=max(events, 1))
    await store.open("bench-context")
    wid = str(uuid.uuid4())
    now = time.time()
    runs = int(events / EVENTS_PER_RUN)
    worker = Worker(
        worker_id=wid, runtime_id="bench-context", state=WorkerState.IDLE, profile="echo",
        created_at=now,
    )  # fmt: skip
    store.write([], [PutWorker(worker)])
    index = 0
    for start in range(0, runs, 500):
        mutations: list[PutRun | AppendTranscript] = []
        for _ in range(start, min(runs, start + 500)):
            rid = str(uuid.uuid4())
            run = Run(run_id=rid, worker_id=wid, state=RunState.COMPLETED, created_at=now)
            mutations.append(PutRun(run))
            for role in (Role.USER, Role.ASSISTANT):
                message = Message(role, "hello world")
                entry = TranscriptEntry(
                    worker_id=wid, index=index, run_id=rid, created_at=now, message=message
                )
                mutations.append(AppendTranscript(entry))
                index += 1
        store.write([], mutations)
    seq = 0
    while seq < events:
        batch = [
            Event(s, now, wid, "r", TextDelta("hello "))
            for s in range(seq + 1, min(events, seq + 1000) + 1)
        ]
        seq = batch[-1].seq
        store.write(batch)
        if seq % 50_000 == 0:
            await store.flush()  # keep the queue (and memory) bounded
    await store.close()
    return wid, seq, index


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all threads (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(
    loop: RunLoop, pid: int, spent: list[float], side: int
) -> Callable[[int], Awaitable[int]]:
    """``loop.runs``, adding the server's CPU time over it to ``spent[side]``."""

    async def work(n: int) -> int:
        before = cpu_seconds(pid)
        done = await loop.runs(n)
        spent[side] += cpu_seconds(pid) - before
        return done

    return work


async def run(quick: bool) -> list[Row]:
    s = QUICK if quick else FULL
    rate = Row(SECTION, f"runs/s, worker with a {s.events:,}-event history vs empty", "runs/s",
               target=0.8, note="baseline: a new worker on the same server; alternated in 10 "
               "slices; echo profile, default context policy")  # fmt: skip
    cpu = Row(SECTION, "server CPU per run, long history vs empty", "ms", kind="info",
              note="the serve process, all threads")  # fmt: skip
    per_cpu = Row(SECTION, "runs per server CPU-second, long history vs empty", "runs/s",
                  target=0.8, note="1 / server CPU per run: the wall-clock rate above swings "
                  "with the load of this shared machine, the CPU per run much less")  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="bench-context-") as tmp:
        data = Path(tmp)
        started = time.perf_counter()
        wid, last_seq, entries = await build_long_worker(data / "runtime.sqlite3", s.events)
        say(
            f"  [{SECTION}] built one worker with {s.events:,} events and {entries:,} transcript "
            f"entries in {time.perf_counter() - started:.0f} s"
        )
        for rep in range(1, s.reps + 1):
            server = await start_server(runtime_argv("--store", "sqlite", "--data-dir", tmp))
            driver = RuntimeDriver(server.target)
            try:
                long_loop = RunLoop(driver.client, wid, last_seq)
                empty_loop = await RunLoop.create(driver.client)
                await long_loop.runs(5)  # the first run after a restart reads from the store
                await empty_loop.runs(5)
                spent = [0.0, 0.0]
                rate_empty, rate_long = await alternate(
                    measured(empty_loop, server.pid, spent, 0),
                    measured(long_loop, server.pid, spent, 1),
                    s.runs,
                    slices=SLICES,
                )
                last_seq = (await driver.client.get_runtime()).last_seq
                await long_loop.close()
                await empty_loop.close()
            finally:
                await driver.close()
                await stop_server(server)
            rate.baseline.append(rate_empty)
            rate.product.append(rate_long)
            per = (s.runs // SLICES) * SLICES
            cpu.baseline.append(spent[0] / per * 1000)
            cpu.product.append(spent[1] / per * 1000)
            per_cpu.baseline.append(per / spent[0])
            per_cpu.product.append(per / spent[1])
            show(rate, rep)
            show(cpu, rep)
    return [rate, cpu, per_cpu]
