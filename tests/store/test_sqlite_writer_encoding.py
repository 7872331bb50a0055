"""How the SQLite writer spends its CPU on a transaction (issue 15 item 6), checked on the real
writer thread and file: every value is encoded before ``BEGIN`` (the writer's Python work is one
stretch under the GIL, not a slice between statements), no body is bound as ``bytes`` (those go
through the sqlite3 module's adapter lookup), and a run written again updates its row in place —
with every row reading back as written and the file's indexes consistent."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from store_samples import FULL_MESSAGE, entry, event, run, worker

from engine import Message, Role
from runtime_server.model import (
    Diagnostic,
    DiagnosticLevel,
    InputCommitted,
    MessageCommitted,
    RunFinished,
    RunStarted,
    RunState,
    TextDelta,
    UsageReported,
)
from runtime_server.store import (
    AppendTranscript,
    PutDiagnostic,
    PutRun,
    PutWorker,
    SqliteStore,
    codec,
)


def _a_run(seq: int, run_id: str) -> list[tuple[list[Any], list[Any]]]:
    """A run's batches as the Runtime writes them: start, deltas, end (seqs from ``seq``)."""
    queued = run(run_id, state=RunState.QUEUED, error=None, finished_at=0.0, input_text="hi")
    started = replace(queued, state=RunState.RUNNING, input_text="")
    done = replace(started, state=RunState.COMPLETED, finished_at=started.started_at + 1)
    asked = replace(entry(index=seq, message=Message(Role.USER, "hi")), seq=seq + 1)
    answer = replace(entry(index=seq + 1, message=Message(Role.ASSISTANT, "a b")), seq=seq + 4)
    return [
        (
            [
                event(seq, payload=RunStarted(started)),
                event(seq + 1, payload=InputCommitted(asked)),
            ],
            [PutRun(queued), PutRun(started), AppendTranscript(asked), PutWorker(worker())],
        ),
        ([event(seq + 2, payload=TextDelta("a"))], []),
        ([event(seq + 3, payload=UsageReported(done.usage))], [PutRun(started)]),
        (
            [
                event(seq + 4, payload=MessageCommitted(answer)),
                event(seq + 5, payload=RunFinished(done)),
            ],
            [AppendTranscript(answer), PutRun(done), PutWorker(worker(active_run_id=""))],
        ),
    ]


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    s = SqliteStore(tmp_path / "runtime.db", retention_interval=3600.0)
    await s.open("rt-new")
    yield s
    await s.close()


async def test_every_value_is_encoded_before_the_transaction_begins(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Watched through the codec functions the writer calls for a diagnostic and for a message
    with tool calls (the rest of its encoding is its own), on a run's real batches."""
    conn = store._conn
    assert conn is not None
    inside: list[bool] = []
    encode_payload, message_to_obj = codec.encode_payload, codec.message_to_obj

    def watched_payload(payload: Any) -> Any:
        inside.append(conn.in_transaction)  # (read on the writer thread, which owns conn)
        return encode_payload(payload)

    def watched_message(message: Any) -> Any:
        inside.append(conn.in_transaction)
        return message_to_obj(message)

    monkeypatch.setattr(codec, "encode_payload", watched_payload)
    monkeypatch.setattr(codec, "message_to_obj", watched_message)
    batches = _a_run(1, "r1")
    tools = replace(entry(index=9, message=FULL_MESSAGE), seq=6)
    diagnostic = Diagnostic(DiagnosticLevel.WARNING, "CODE", "msg", 1.5, "w1", "r1")
    batches.append(([], [AppendTranscript(tools), PutDiagnostic(1, diagnostic, 10)]))
    for events, mutations in batches:
        store.write(events, mutations)
    await store.flush()
    assert len(inside) >= 2  # the writer did encode through them
    assert not any(inside)  # ... and never between BEGIN and COMMIT


async def test_no_body_is_bound_as_bytes(store: SqliteStore) -> None:
    """The sqlite3 module binds a bytearray directly but looks up an adapter for every bytes
    value (about 2,000 instructions each, measured): a counting adapter for bytes must never be
    called for what the writer writes."""
    bound: list[bytes] = []

    def counting(value: bytes) -> bytes:
        bound.append(value)
        return value

    key = (bytes, sqlite3.PrepareProtocol)
    sqlite3.register_adapter(bytes, counting)
    try:
        for events, mutations in _a_run(1, "r1"):
            store.write(events, mutations)
        await store.flush()
    finally:
        del sqlite3.adapters[key]
    assert bound == []
    got = await store.read_events(0, 100)
    assert got == [e for events, _ in _a_run(1, "r1") for e in events]


async def test_a_run_written_again_is_updated_in_place(store: SqliteStore, tmp_path: Path) -> None:
    conn = store._conn
    assert conn is not None
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    batches = _a_run(1, "r1")
    store.write(*batches[0])
    await store.flush()  # the run's row exists: its next puts find it
    for events, mutations in batches[1:]:
        store.write(events, mutations)
        await store.flush()
    runs = [s for s in statements if "INTO runs" in s]
    assert runs
    assert all("ON CONFLICT (run_id) DO UPDATE" in s for s in runs)
    assert not any("REPLACE INTO runs" in s for s in statements)
    await store.close()

    reopened = SqliteStore(tmp_path / "runtime.db")
    state = await reopened.open("rt-new")
    try:
        done = batches[-1][1][1].run
        assert state.runs == [replace(done, input_text="")]
        assert await reopened.read_run_input("r1") == "hi"
        assert [w.active_run_id for w in state.workers] == [""]
    finally:
        await reopened.close()
    with sqlite3.connect(tmp_path / "runtime.db") as check:
        assert check.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        by_worker = check.execute(
            "SELECT run_id FROM runs INDEXED BY runs_by_worker WHERE worker_id = 'w1'"
        ).fetchall()
    check.close()
    assert by_worker == [("r1",)]
