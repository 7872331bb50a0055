"""What only the durable store promises: state and seqs survive a reopen and a kill -9, group commit
groups, bad files are refused untouched, and a failing writer is loud."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from store_samples import entry, event, run, seqs, worker

from engine import Message, Role
from runtime_server.errors import StoreFailure
from runtime_server.model import Event, RunState, WorkerState
from runtime_server.store import (
    SCHEMA_VERSION,
    AppendTranscript,
    DeleteWorkerData,
    PutRequestKey,
    PutRun,
    PutWorker,
    SqliteStore,
    StoredState,
    StoreOpenError,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


async def opened(
    path: Path, runtime_id: str = "rt-new", **kw: object
) -> tuple[SqliteStore, StoredState]:
    store = SqliteStore(path, retention_interval=0.0, **kw)  # type: ignore[arg-type]
    return store, await store.open(runtime_id)


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir())}


async def test_creates_parent_directory_and_keeps_new_runtime_id(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "runtime.db"
    store, state = await opened(path, "rt-first")
    await store.close()
    assert path.is_file()
    assert (state.runtime_id, state.last_seq, state.workers) == ("rt-first", 0, [])
    store, state = await opened(path, "rt-second")
    await store.close()
    assert state.runtime_id == "rt-first"


async def test_reopen_restores_state_and_seq_continues(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store, _ = await opened(path, "rt-first")
    w1, w2 = worker("w1"), worker("w2", state=WorkerState.IDLE, workspace=None)
    r1 = run("r1", "w1")
    store.write(
        [event(1), event(2)],
        [PutWorker(w1), PutWorker(w2), PutRun(run("r1", "w1", state=RunState.RUNNING))],
    )
    transcript_w1 = [entry("w1", 0, Message(Role.USER, "hi")), entry("w1", 1)]
    keys = [PutRequestKey("create", "req-1", "fp", "w1", 1), PutRequestKey("w1", "q", "f", "r1", 3)]
    store.write(
        [event(3)],
        [
            PutRun(r1),  # replaces the RUNNING version
            *(AppendTranscript(e) for e in transcript_w1),
            AppendTranscript(entry("w2", 0)),
            *keys,
        ],
    )
    await store.close()

    store, state = await opened(path, "rt-ignored")
    try:
        assert state.runtime_id == "rt-first"
        assert state.last_seq == 3
        assert sorted(state.workers, key=lambda w: w.worker_id) == [w1, w2]
        # runs come back as metadata; their input text is read on demand
        assert state.runs == [replace(r1, input_text="")]
        assert await store.read_run_input("r1") == r1.input_text
        # only lengths and open tails (from the last non-tool message) are loaded; the rest is
        # read on demand
        assert state.transcript_lengths == {"w1": 2, "w2": 1}
        assert state.transcripts == {"w1": transcript_w1[1:], "w2": [entry("w2", 0)]}
        assert await store.read_transcript("w1", 0, 10) == transcript_w1
        assert sorted(state.request_keys, key=lambda k: k.seq) == keys
        assert seqs(await store.read_events(0, 10)) == [1, 2, 3]
        assert store.oldest_seq() == 1
        with pytest.raises(ValueError, match="not above the last written seq 3"):
            store.write([event(3)])
        store.write([event(4)])
        await store.flush()
        assert seqs(await store.read_events(3, 10)) == [4]
    finally:
        await store.close()


async def test_last_seq_survives_retention_of_everything_but_the_newest(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store, _ = await opened(path, retention_events=1, retention_seconds=1.0)
    store.write([event(s, time=1.0) for s in range(1, 6)])  # all far older than a second
    await store.close()
    store, state = await opened(path)
    await store.close()
    assert state.last_seq == 5
    assert store.oldest_seq() == 5  # never the newest event


async def test_delete_worker_data_removes_worker_runs_transcript_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store, _ = await opened(path)
    store.write(
        [event(1, "w1"), event(2, "w2")],
        [
            PutWorker(worker("w1")),
            PutWorker(worker("w2")),
            PutRun(run("r1", "w1")),
            PutRun(run("r2", "w2")),
            AppendTranscript(entry("w1", 0)),
            AppendTranscript(entry("w2", 0)),
            PutRequestKey("create", "c1", "fp", "w1", 1),
            PutRequestKey("w1", "k1", "fp", "r1", 1),
            PutRequestKey("w2", "k2", "fp", "r2", 2),
        ],
    )
    store.write([event(3, "w1")], [DeleteWorkerData("w1")])
    await store.close()
    store, state = await opened(path)
    await store.close()
    assert [w.worker_id for w in state.workers] == ["w2"]
    assert [r.run_id for r in state.runs] == ["r2"]
    assert list(state.transcripts) == ["w2"]
    # "create" keys outlive the worker, as they do in the Runtime's memory
    assert {(k.scope, k.request_id) for k in state.request_keys} == {("create", "c1"), ("w2", "k2")}


async def test_second_store_on_the_same_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store, _ = await opened(path)
    try:
        with pytest.raises(StoreOpenError, match="in use by another store"):
            await SqliteStore(path).open("rt-x")
    finally:
        await store.close()
    store, _ = await opened(path)  # released by close()
    await store.close()


async def test_listener_reports_only_committed_seqs(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store, _ = await opened(path)
    spy = sqlite3.connect(path)  # another connection sees only committed data
    checked: list[tuple[int, int]] = []

    def listener(seq: int) -> None:
        (max_seq,) = spy.execute("SELECT max(last_seq) FROM event_chunks").fetchone()
        checked.append((seq, max_seq))

    store.set_commit_listener(listener)
    for s in range(1, 201):
        store.write([event(s)])
        if s % 10 == 0:
            await asyncio.sleep(0)
    await store.close()
    spy.close()
    assert checked
    assert checked[-1][0] == 200
    assert all(committed >= seq for seq, committed in checked)


async def test_group_commit_groups_batches(tmp_path: Path) -> None:
    store, _ = await opened(tmp_path / "runtime.db")
    reported: list[int] = []
    store.set_commit_listener(reported.append)
    for s in range(1, 2001):  # all in one loop step: they queue while the writer commits
        store.write([event(s)])
    await store.flush()
    stats = store.stats
    await store.close()
    assert (stats.batches, stats.events) == (2000, 2000)
    assert stats.transactions <= 2000 // 4, stats
    assert reported[-1] == 2000
    assert len(reported) <= stats.transactions  # one report per transaction at most


async def test_future_schema_version_is_refused_and_file_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store, _ = await opened(path)
    store.write([event(1)], [PutWorker(worker())])
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
    conn.close()
    before = files_of(tmp_path)

    with pytest.raises(StoreOpenError, match="newer than this build") as info:
        await SqliteStore(path).open("rt-x")
    assert str(path) in str(info.value)
    assert f"schema_version {SCHEMA_VERSION + 1}" in str(info.value)
    assert isinstance(info.value, StoreFailure)
    assert files_of(tmp_path) == before


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"this is not a database at all\n" * 100, "not an SQLite database"),
        (b"SQLite format 3\x00" + b"\xff" * 4000, "not a readable SQLite database"),
    ],
)
async def test_corrupt_file_is_refused_and_untouched(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    path = tmp_path / "runtime.db"
    path.write_bytes(content)
    with pytest.raises(StoreOpenError, match=problem) as info:
        await SqliteStore(path).open("rt-x")
    assert str(path) in str(info.value)
    assert files_of(tmp_path) == {"runtime.db": content}


async def test_foreign_database_is_refused_and_untouched(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER PRIMARY KEY)")
    conn.close()
    before = files_of(tmp_path)
    with pytest.raises(StoreOpenError, match="not a worker-runtime store"):
        await SqliteStore(path).open("rt-x")
    assert files_of(tmp_path) == before


async def test_writer_failure_is_loud(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store, _ = await opened(tmp_path / "runtime.db")
    reported: list[int] = []
    store.set_commit_listener(reported.append)
    store.write([event(1)])
    await store.flush()
    bad = Event(2, 0.0, "w1", "r1", object())  # type: ignore[arg-type]
    store.write([bad])
    with caplog.at_level(logging.ERROR), pytest.raises(StoreFailure, match="failed"):
        await store.flush()
    assert "writer failed" in caplog.text
    assert reported == [1]  # nothing of the failed transaction is reported
    assert store.failed
    with pytest.raises(StoreFailure):
        store.write([event(4)])
    with pytest.raises(StoreFailure):
        await store.close()
    await store.close()  # idempotent once closed


async def test_disk_full_fails_pending_flush(tmp_path: Path) -> None:
    store, _ = await opened(tmp_path / "runtime.db")
    store.write([event(1)])
    await store.flush()
    # SQLITE_FULL, the way a full disk reports it, by capping the file at its current size.
    assert store._conn is not None
    store._conn.execute("PRAGMA max_page_count = 1")
    store.write([event(s, payload=None) for s in range(2, 2000)])
    with pytest.raises(StoreFailure) as info:
        await store.flush()
    assert isinstance(info.value.__cause__, sqlite3.Error)
    with pytest.raises(StoreFailure):
        await store.close()


def run_child_until_killed(path: Path, reports: int) -> list[int]:
    """Start the writer child, read ``reports`` committed seqs, SIGKILL it mid-stream, and return
    every seq it reported (including lines still in the pipe)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
    child = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sqlite_kill_child.py")), str(path)],
        stdout=subprocess.PIPE,
        env=env,
        cwd=REPO_ROOT,
    )
    assert child.stdout is not None
    reported: list[int] = []
    try:
        assert child.stdout.readline().strip() == b"ready"
        while len(reported) < reports:  # the child writes until it dies
            line = child.stdout.readline()
            assert line, "the child exited early"
            reported.append(int(line))
        os.kill(child.pid, signal.SIGKILL)
        rest, _ = child.communicate(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL
    return reported + [int(line) for line in rest.split()]


async def test_kill_9_loses_no_reported_seq(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    reported = await asyncio.to_thread(run_child_until_killed, path, 300)

    store, state = await opened(path, "rt-other")
    try:
        assert state.runtime_id == "rt-child"
        assert [w.worker_id for w in state.workers] == ["w-child"]
        assert state.last_seq >= max(reported)
        survived = set(seqs(await store.read_events(0, state.last_seq + 1)))
        assert set(reported) <= survived
        assert survived == set(range(1, state.last_seq + 1))  # no holes either
    finally:
        await store.close()


async def test_undecodable_row_fails_open_clearly(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store, _ = await opened(path)
    store.write([event(1)], [PutWorker(worker("w1"))])
    await store.close()
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE workers SET body = ?", (b'{"worker_id": "w1"}',))
    conn.close()
    with pytest.raises(StoreOpenError, match="cannot decode worker body") as info:
        await SqliteStore(path).open("rt-x")
    assert str(path) in str(info.value)
