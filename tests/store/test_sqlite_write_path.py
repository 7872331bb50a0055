"""The SQLite writer's cheaper write path (issue 15 item 6) writes the same data with less work:
bodies byte-identical to the generic encoder, a run encoded once per transaction, superseded
PutRun/PutWorker rows skipped (what reads back is unchanged, the input text kept), events
inserted many rows to a statement, and one report to the loop per writer pass. Counts come from
the real writer connection's statement trace and the real loop's call_soon_threadsafe."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from chunk_rows import kinds_and_bodies
from store_samples import all_payloads, event, run, worker

from runtime_server import model
from runtime_server.model import RunFinished, RunStarted, RunState, WorkerState
from runtime_server.store import (
    DeleteWorkerData,
    PutRun,
    PutWorker,
    SqliteStore,
    codec,
)


async def test_stored_bodies_are_the_codecs_bytes(tmp_path: Path) -> None:
    """The writer's shortcuts (text deltas, state changes, a run's JSON once per transaction)
    store exactly the bytes of the codec's plain encoder, lone surrogates and escapes included."""
    payloads = [
        *all_payloads(),
        *(model.TextDelta(t) for t in ("\ud83d", 'a"b\\c\n\t\u2028é', "")),
        model.ReasoningDelta("\udc00 r"),
    ]
    r = run(input_text="the input")
    payloads += [RunStarted(r), RunFinished(r)]  # the same run twice in one transaction
    store = await _open(tmp_path / "runtime.db")
    store.write([event(i + 1, payload=p) for i, p in enumerate(payloads)], [PutRun(r)])
    await store.flush()
    await store.close()
    with sqlite3.connect(tmp_path / "runtime.db") as conn:
        rows = kinds_and_bodies(conn)
        (stored_run,) = conn.execute("SELECT body FROM runs").fetchone()
    conn.close()
    assert rows == [codec.encode_payload(p) for p in payloads]
    for p, (kind, body) in zip(payloads, rows, strict=True):
        assert body == codec.dumps(codec._PAYLOADS[kind][1](p))  # the plain JSON encoder's
        assert codec.decode_payload(kind, body) == p
    assert stored_run == codec.encode_run(replace(r, input_text=""))


class _Trace:
    """The statements the store's writer connection runs (its sqlite3 trace callback)."""

    def __init__(self, store: SqliteStore) -> None:
        self.statements: list[str] = []
        assert store._conn is not None
        store._conn.set_trace_callback(self.statements.append)

    def count(self, prefix: str) -> int:
        return sum(1 for s in self.statements if s.startswith(prefix))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "runtime.db"


async def _open(path: Path) -> SqliteStore:
    store = SqliteStore(path, retention_interval=3600.0)
    await store.open("rt-new")
    return store


async def test_superseded_puts_are_skipped_and_read_back_as_written(store_path: Path) -> None:
    store = await _open(store_path)
    trace = _Trace(store)
    queued = run("r1", input_text="the input")
    started = replace(queued, state=RunState.RUNNING, started_at=2.0, input_text="")
    w_idle, w_running = worker("w1"), worker("w1", state=WorkerState.RUNNING)
    store.write(
        [event(1), event(2)],
        [PutRun(queued), PutWorker(w_idle), PutRun(started), PutWorker(w_running)],
    )
    await store.flush()
    assert trace.count("INSERT INTO runs") == 1
    assert trace.count("INSERT OR REPLACE INTO workers") == 1
    assert trace.count("INSERT OR REPLACE INTO run_inputs") == 1  # the input is kept
    await store.close()

    reopened = SqliteStore(store_path)
    state = await reopened.open("rt-new")
    try:
        assert state.runs == [started]
        assert state.workers == [w_running]
        assert await reopened.read_run_input("r1") == "the input"
    finally:
        await reopened.close()


async def test_puts_around_a_delete_are_all_written_in_order(store_path: Path) -> None:
    store = await _open(store_path)
    trace = _Trace(store)
    first, second = run("r1", worker_id="w1"), run("r2", worker_id="w1")
    store.write(
        [event(1)],
        [
            PutWorker(worker("w1")),
            PutRun(first),
            DeleteWorkerData("w1"),
            PutWorker(worker("w1", display_name="again")),
            PutRun(second),
            PutRun(replace(second, state=RunState.RUNNING)),
        ],
    )
    await store.flush()
    assert trace.count("INSERT INTO runs") == 3
    await store.close()
    reopened = SqliteStore(store_path)
    state = await reopened.open("rt-new")
    await reopened.close()
    assert state.workers == [worker("w1", display_name="again")]
    assert state.runs == [replace(second, state=RunState.RUNNING, input_text="")]


async def test_events_go_in_one_row_per_worker_per_transaction(store_path: Path) -> None:
    store = await _open(store_path)
    trace = _Trace(store)
    store.write([event(s) for s in range(1, 14)])  # a 10-word echo run's 13 events: one row
    await store.flush()
    store.write([event(s, worker_id=f"w{s % 3}") for s in range(14, 114)])  # 3 workers: 3 rows
    await store.flush()
    assert trace.count("INSERT INTO event_chunks") == 2  # one statement per transaction
    got = await store.read_events(0, 1000)
    await store.close()
    assert got == [event(s) for s in range(1, 14)] + [
        event(s, worker_id=f"w{s % 3}") for s in range(14, 114)
    ]
    with sqlite3.connect(store_path) as conn:
        rows = conn.execute("SELECT last_seq, tx_first, worker_id, events FROM event_chunks")
        assert sorted(rows) == [
            (13, 1, "w1", 13),
            (111, 14, "w0", 33),
            (112, 14, "w1", 33),
            (113, 14, "w2", 34),
        ]
    conn.close()


async def test_one_report_to_the_loop_per_writer_pass(store_path: Path) -> None:
    store = await _open(store_path)
    loop = asyncio.get_running_loop()
    calls: list[Any] = []
    original = loop.call_soon_threadsafe

    def counting(callback: Any, *args: Any, **kw: Any) -> Any:
        calls.append(callback)
        return original(callback, *args, **kw)

    committed: list[int] = []
    store.set_commit_listener(committed.append)
    loop.call_soon_threadsafe = counting  # type: ignore[method-assign,assignment]
    try:
        for s in range(1, 6):
            store.write([event(s)])
            await store.flush()
    finally:
        del loop.call_soon_threadsafe
    await store.close()
    assert committed == [1, 2, 3, 4, 5]
    writer_reports = [c for c in calls if getattr(c, "__self__", None) is store]
    assert len(writer_reports) == 5  # was two per pass: the commit, then the settled batch


async def test_meta_counters_are_exact_after_close(tmp_path: Path) -> None:
    """(Written every COUNTERS_EVERY events and at close: test_sqlite_counters.)"""
    store = await _open(tmp_path / "runtime.db")
    for s in range(1, 8):
        store.write([event(s)])
        if s % 3 == 0:
            await store.flush()
    await store.close()
    with sqlite3.connect(tmp_path / "runtime.db") as conn:
        meta = dict(conn.execute("SELECT key, value FROM meta"))
    conn.close()
    assert (int(meta["last_seq"]), int(meta["event_count"])) == (7, 7)


class _CountingQueue:
    """The store's real queue, counting what the loop hands to the writer thread."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.puts: list[Any] = []

    def put(self, item: Any) -> None:
        self.puts.append(item)
        self.inner.put(item)

    def get(self, *args: Any, **kw: Any) -> Any:
        return self.inner.get(*args, **kw)

    def get_nowait(self) -> Any:
        return self.inner.get_nowait()


async def test_a_burst_of_writes_goes_to_the_writer_in_one_piece(store_path: Path) -> None:
    store = await _open(store_path)
    counting = _CountingQueue(store._queue)
    store._queue = counting  # type: ignore[assignment]
    committed: list[int] = []
    store.set_commit_listener(committed.append)
    for s in range(1, 11):  # one loop step's writes, like many runs' chunks at once
        store.write([event(s)])
    await store.flush()
    assert [len(item) for item in counting.puts] == [10]  # was 10 hand-offs, one per batch
    assert store.stats.transactions == 1
    assert committed == [10]
    store.write([event(11)])  # a lone write still goes, a loop step later
    await asyncio.wait_for(store.flush(), 10)
    assert committed == [10, 11]
    await store.close()


async def test_a_runs_start_and_its_stream_go_in_one_piece(store_path: Path) -> None:
    """A run's start and its first chunk are a step or two apart (the run task starts, then the
    provider): writes up to two quiet loop steps apart are one burst, one transaction. (The time
    bound is lifted here: the test is about steps, not the clock of a loaded machine.)"""
    store = await _open(store_path)
    store._max_hold = 60.0
    counting = _CountingQueue(store._queue)
    store._queue = counting  # type: ignore[assignment]
    store.write([event(1)])  # the start (and the acknowledgement's batch)
    await asyncio.sleep(0)
    await asyncio.sleep(0)  # two quiet steps
    for s in range(2, 12):  # the stream
        store.write([event(s)])
        await asyncio.sleep(0)
    await store.flush()
    assert [len(item) for item in counting.puts] == [11]  # was two hand-offs: 1, then 10
    assert store.stats.transactions == 1
    await store.close()


async def test_close_commits_what_is_still_held(store_path: Path) -> None:
    store = await _open(store_path)
    store.write([event(1)], [PutWorker(worker("w1"))])
    await store.close()  # no loop step in between: the batch is still held
    reopened = SqliteStore(store_path)
    state = await reopened.open("rt-new")
    got = await reopened.read_events(0, 10)
    await reopened.close()
    assert (state.last_seq, state.workers, got) == (1, [worker("w1")], [event(1)])


async def test_the_writer_never_grows_a_callers_string(store_path: Path) -> None:
    """A non-ASCII str bound as text gets its UTF-8 form cached inside it by the sqlite3 module,
    doubling the string's memory for its lifetime (and the Runtime's transcript window measures
    its strings). The input text is bound as UTF-8 bytes instead; it reads back the same, lone
    surrogates included."""
    texts = ["\U0001f600 input " * 1000, "lone \ud83d surrogate é", "plain ascii input"]
    sizes = [sys.getsizeof(t) for t in texts]
    runs = [run(run_id=f"r{i}", input_text=t) for i, t in enumerate(texts)]
    store = await _open(store_path)
    store.write([event(1)], [PutRun(r) for r in runs])
    await store.flush()
    assert [sys.getsizeof(t) for t in texts] == sizes
    assert [await store.read_run_input(r.run_id) for r in runs] == texts
    await store.close()
