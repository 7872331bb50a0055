"""Durability with the bounded write queue engaged: a real ``serve`` process whose SQLite write
backlog bound is tiny (16 events), so its runs wait for the writer all the time, is killed with
SIGKILL mid-stream and restarted on the same data dir. Every event a subscriber saw before the
crash is still in the log at the same seq (nothing acknowledged is lost, no seq reused), the runs
that were active are INTERRUPTED exactly once, and the seq continues above the old log. The
bound is reported by GetRuntime, from the config file through the wire to the client model."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from pathlib import Path

from serving import ServeProcessFactory, all_events, eventually, write_config

from runtime_client import Event, RunFinished, RunState, RuntimeServiceError, TextDelta

WORKERS = 8
WORDS = 400
BOUND = 16


def key(e: Event) -> tuple[int, str, str, str]:
    return (e.seq, e.worker_id, e.run_id, type(e.payload).__name__)


async def test_kill9_while_runs_wait_for_the_writer_loses_nothing(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "tight.toml", delay_ms=0, store_write_backlog_events=BOUND)
    sp = await serve_process(data, config=config)
    client = sp.client()
    info = await client.get_runtime()
    assert info.limits.store_write_backlog_events == BOUND
    created = await asyncio.gather(*(client.create_worker(profile="slow") for _ in range(WORKERS)))
    seen: list[Event] = []

    async def follow() -> None:
        events = client.subscribe(resume=False)
        with contextlib.suppress(RuntimeServiceError):
            async with contextlib.aclosing(events):
                async for event in events:
                    seen.append(event)

    follower = asyncio.create_task(follow())
    text = " ".join(f"w{i}" for i in range(WORDS))
    accepted = await asyncio.gather(*(client.send_input(c.worker.worker_id, text) for c in created))
    await eventually(
        lambda: sum(isinstance(e.payload, TextDelta) for e in seen) >= WORKERS * WORDS // 4,
        what="the runs streaming",
    )
    sp.kill9()
    await asyncio.wait_for(follower, 30)
    assert seen, "the follower saw events before the crash"

    sp = await serve_process(data, config=config)
    client = sp.client()
    runs = await asyncio.gather(*(client.wait_run(a.run.run_id, timeout=60) for a in accepted))
    # a run may have completed before the kill; every other one is INTERRUPTED
    assert {r.state for r in runs} <= {RunState.COMPLETED, RunState.INTERRUPTED}
    assert RunState.INTERRUPTED in {r.state for r in runs}
    logged = await all_events(client)
    assert [key(e) for e in logged[: len(seen)]] == [key(e) for e in seen]  # nothing lost
    finished = Counter(e.payload.run.run_id for e in logged if isinstance(e.payload, RunFinished))
    assert all(finished[a.run.run_id] == 1 for a in accepted)
    again = await client.send_input(created[0].worker.worker_id, "after the crash")
    assert again.seq > seen[-1].seq  # the seq continues above everything seen
    done = await client.wait_run(again.run.run_id, timeout=60)
    assert done.state is RunState.COMPLETED
