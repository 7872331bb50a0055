"""Upgrading a store written by the previous file format: ``serve`` opens a schema-version-1
SQLite file (built as version 1 wrote it: tests/store/v1_file.py), migrates it in place at start,
serves the old worker, run, events and transcript exactly as they were, goes on with new runs
after them, and after a ``kill -9`` and a restart has everything, old and new."""

from __future__ import annotations

import sqlite3
import sys
from pathlib import Path

from serving import ServeProcessFactory, all_events

from engine import Message, Role
from runtime_client import RunState as ClientRunState
from runtime_client import TextDelta as ClientTextDelta
from runtime_server.model import (
    Event,
    InputCommitted,
    MessageCommitted,
    Payload,
    Run,
    RunFinished,
    RunQueued,
    RunStarted,
    RunState,
    TextDelta,
    TranscriptEntry,
    Worker,
    WorkerCreated,
    WorkerState,
    WorkerStateChanged,
)

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "store"))
from v1_file import V1Content, write_v1_file

DB = "runtime.sqlite3"
W = "01900000-0000-7000-8000-000000000201"
R = "01900000-0000-7000-8000-000000000301"
T0 = 1_700_000_000.0


def _v1_state() -> V1Content:
    worker = Worker(W, "rt-v1", WorkerState.IDLE, "echo", created_at=T0)
    queued = Run(R, W, RunState.QUEUED, T0 + 1, input_text="hello world")
    started = Run(R, W, RunState.RUNNING, T0 + 1, started_at=T0 + 2)
    done = Run(R, W, RunState.COMPLETED, T0 + 1, started_at=T0 + 2, finished_at=T0 + 3)
    asked = TranscriptEntry(W, 0, R, T0 + 2, Message(Role.USER, "hello world"), seq=4)
    answer = TranscriptEntry(W, 1, R, T0 + 3, Message(Role.ASSISTANT, "hello world"), seq=8)
    payloads: list[tuple[Payload, str]] = [
        (WorkerCreated(Worker(W, "rt-v1", WorkerState.IDLE, "echo", created_at=T0)), ""),
        (RunQueued(queued), R),
        (RunStarted(started), R),
        (InputCommitted(asked), R),
        (WorkerStateChanged(WorkerState.IDLE, WorkerState.RUNNING), R),
        (TextDelta("hello"), R),
        (TextDelta(" world"), R),
        (MessageCommitted(answer), R),
        (RunFinished(done), R),
        (WorkerStateChanged(WorkerState.RUNNING, WorkerState.IDLE), R),
    ]
    events = [Event(i + 1, T0 + i, W, rid, p) for i, (p, rid) in enumerate(payloads)]
    return V1Content(
        runtime_id="rt-v1",
        events=events,
        workers=[worker],
        runs=[Run(R, W, RunState.COMPLETED, T0 + 1, "hello world", T0 + 2, T0 + 3)],
        transcript=[asked, answer],
    )


async def test_serve_migrates_a_version_1_file_and_goes_on(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    write_v1_file(data / DB, _v1_state())

    sp = await serve_process(data)
    client = sp.client()
    info = await client.get_runtime()
    assert info.runtime_id == "rt-v1"  # migrated, never reset
    assert info.last_seq >= 10  # (a restart may log events of its own after the old ones)
    old = (await all_events(client))[:10]
    assert [e.seq for e in old] == list(range(1, 11))
    assert [e.run_id for e in old] == [""] + [R] * 9
    assert [e.payload.text for e in old if isinstance(e.payload, ClientTextDelta)] == [
        "hello",
        " world",
    ]
    by_worker = (await client.list_events(after_seq=5, worker_id=W)).events
    assert [e.seq for e in by_worker][:5] == list(range(6, 11))
    transcript = (await client.get_transcript(W)).items
    assert [(e.message.text, e.seq) for e in transcript] == [("hello world", 4), ("hello world", 8)]
    run = await client.get_run(R)
    assert run.state is ClientRunState.COMPLETED

    accepted = await client.send_input(W, "again")
    done = await client.wait_run(accepted.run.run_id, timeout=30)
    assert done.state is ClientRunState.COMPLETED
    grown = await all_events(client)
    assert grown[:10] == old
    sp.kill9()

    conn = sqlite3.connect(f"{(data / DB).resolve().as_uri()}?mode=ro", uri=True)
    try:
        assert dict(conn.execute("SELECT key, value FROM meta"))["schema_version"] == 2
    finally:
        conn.close()

    sp = await serve_process(data)
    client = sp.client()
    after = await all_events(client)
    assert after[: len(grown)] == grown
    texts = [e.message.text for e in (await client.get_transcript(W)).items]
    assert texts[:2] == ["hello world", "hello world"]
    assert "again" in texts
    assert sp.terminate() == 0
