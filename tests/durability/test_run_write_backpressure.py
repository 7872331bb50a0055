"""Backpressure through a real Runtime on a real SQLite file: while the store's writer cannot
commit (another connection holds the database's write lock), a streaming run stops producing
once the write backlog reaches ``max_write_backlog`` — the queue stays bounded instead of
taking the whole answer — and when commits resume the run finishes with every event, in order,
exactly once. GetRuntime reports the bound (``store_write_backlog_events``)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from serving import eventually

from runtime_server.model import Event, Limits, RunState, TextDelta
from runtime_server.runtime import Runtime, parse_config
from runtime_server.store import SqliteStore

BOUND = 40
WORDS = 600


async def test_a_run_waits_for_the_writer_at_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    store = SqliteStore(path, retention_interval=0.0, max_write_backlog=BOUND)
    rt = Runtime(
        store=store,
        config=parse_config({}),
        limits=Limits(store_write_backlog_events=BOUND),
    )
    await rt.start()
    try:
        info = await rt.get_runtime()
        assert info.limits.store_write_backlog_events == BOUND
        created = await rt.create_worker(profile="echo")
        wid = created.worker.worker_id
        lock = sqlite3.connect(path, isolation_level=None, timeout=0.0)
        lock.execute("BEGIN IMMEDIATE")  # the writer waits for this lock (busy timeout)
        try:
            send = asyncio.create_task(rt.send_input(wid, " ".join(["tok"] * WORDS)))
            await eventually(lambda: store.write_backlog >= BOUND, what="the backlog to fill")
            highest = 0
            for _ in range(50):  # the run keeps streaming: give it every chance to overrun
                await asyncio.sleep(0.002)
                highest = max(highest, store.write_backlog)
            # at most one stream event's writes past the bound (a TextDelta is one event)
            assert highest <= BOUND + 1, highest
            assert not send.done()  # its InputCommitted is not committed either
        finally:
            lock.rollback()
            lock.close()
        accepted = await asyncio.wait_for(send, 20)
        run = await rt.wait_run(accepted.run.run_id, timeout=20.0)
        assert run.state is RunState.COMPLETED
        events: list[Event] = []
        after = created.seq
        while True:
            page = await rt.list_events(after_seq=after, worker_id=wid)
            if not page.events:
                break
            events += page.events
            after = page.events[-1].seq
        seqs = [e.seq for e in events]
        assert seqs == sorted(set(seqs))  # in order, exactly once
        text = "".join(e.payload.text for e in events if isinstance(e.payload, TextDelta))
        assert text.split() == ["tok"] * WORDS  # nothing lost while it waited
    finally:
        await rt.close()
