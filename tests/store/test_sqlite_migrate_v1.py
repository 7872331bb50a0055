"""Schema version 2 migrates a real version-1 file in place (``MIGRATIONS[1]``, inside the
opening transaction; never a reset): every event (by seq, by worker, from any cursor),
transcript entry (with its seq), run (and its input text), worker, request key, diagnostic,
config bundle and meta value reads back identically through the version-2 store, the file then
says schema_version 2 and holds none of version 1's tables it replaced, and it goes on working
(new events, retention, a reopen). And a version-2 file is refused by a build that supports
only version 1, untouched."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from store_samples import RUNTIME_ID, all_payloads, entry, event, run, seqs, worker
from v1_file import V1Content, write_v1_file

from engine import Message, Role
from runtime_server.model import (
    ConfigBundle,
    Diagnostic,
    DiagnosticLevel,
    RunState,
    TextDelta,
)
from runtime_server.store import PutRequestKey, SqliteStore, StoreOpenError, schema


def _content() -> V1Content:
    payloads = all_payloads()
    # 3 workers, interleaved in stretches of 1-4 events; every payload kind; retention had
    # already removed seqs 1..4; a stretch longer than a chunk (300 events of one worker)
    events = []
    seq = 5
    for i, p in enumerate(payloads * 3):
        for _ in range(1 + i % 4):
            events.append(event(seq, worker_id=f"w{i % 3}", payload=p, run_id=f"r{seq // 7}"))
            seq += 1
    for _ in range(300):
        events.append(event(seq, worker_id="w1", payload=TextDelta(f"x{seq} \ud83d")))
        seq += 1
    runs = [
        run("r1"),
        run("r2", worker_id="w2", input_text="two\u2028\ud800", state=RunState.QUEUED, error=None),
        run("r3", input_text=""),
    ]
    transcript = [
        replace(entry(index=0, message=Message(Role.USER, "hi")), seq=7),
        entry(index=1),  # seq not known (0): no transcript_seq row
        replace(entry(worker_id="w2", index=0), seq=9),
    ]
    bundle = ConfigBundle(
        "b1", "sha256:abc", "application/x-tar", 3, 1.5, ("p1", "p2"), annotations={"k": "v"}
    )
    return V1Content(
        runtime_id="rt-v1",
        events=events,
        workers=[worker("w1"), worker("w2", labels={}, workspace=None)],
        runs=runs,
        legacy_runs=[run("r0", input_text="legacy text")],
        transcript=transcript,
        request_keys=[
            PutRequestKey("create", "req-1", "fp", "w1", 5),
            PutRequestKey("w1", "req-2", "fp2", "r1", 9),
        ],
        diagnostics=[
            (1, Diagnostic(DiagnosticLevel.WARNING, "C", "m", 1.5, "w1", "r1")),
            (2, Diagnostic(DiagnosticLevel.INFO, "", "")),
        ],
        bundles=[(bundle, b"abc")],
        profiles={"w1": '{"profile": "echo"}'},
        meta={"runs.lifetime": "12", "store.probe": "x"},
    )


def _meta(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


async def test_a_version_1_file_reads_back_identically_after_migration(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    c = _content()
    write_v1_file(path, c)
    events = list(c.events)
    last = events[-1].seq

    store = SqliteStore(path, retention_interval=3600.0)
    state = await store.open("rt-unused")
    try:
        assert state.runtime_id == "rt-v1"  # migrated, never reset
        assert state.last_seq == last
        assert store.oldest_seq() == 5
        # every event, by seq, from every cursor, with limits ending anywhere
        assert await store.read_events(0, 10_000) == events
        for after in (0, 4, 5, 6, 17, 40, last - 301, last - 1, last):
            for limit in (1, 3, 50, 10_000):
                want = [e for e in events if e.seq > after][:limit]
                assert await store.read_events(after, limit) == want, (after, limit)
                for w in ("w0", "w1", "w2"):
                    mine = [e for e in events if e.seq > after and e.worker_id == w][:limit]
                    assert await store.read_events(after, limit, w) == mine, (after, limit, w)
        # everything else
        assert state.workers == sorted(c.workers, key=lambda w: (w.created_at, w.worker_id))
        want_runs = [replace(r, input_text="") for r in c.runs] + list(c.legacy_runs)
        assert sorted(state.runs, key=lambda r: r.run_id) == sorted(
            want_runs, key=lambda r: r.run_id
        )
        for r in [*c.runs, *c.legacy_runs]:
            assert await store.read_run_input(r.run_id) == r.input_text
        assert await store.read_run_input("nope") is None
        assert await store.read_transcript("w1", 0, 10) == [
            e for e in c.transcript if e.worker_id == "w1"
        ]
        assert await store.read_transcript("w2", 0, 10) == [c.transcript[2]]
        assert state.transcript_lengths == {"w1": 2, "w2": 1}
        assert state.request_keys == list(c.request_keys)
        assert await store.read_diagnostics() == list(c.diagnostics)
        assert state.config_bundles == [c.bundles[0][0]]
        assert await store.read_config_bundle("b1", "sha256:abc") == b"abc"
        assert state.worker_profiles == c.profiles
        assert state.meta == c.meta
        # it goes on: a new event after the migrated log, by seq and by worker
        store.write([event(last + 1, worker_id="w2")])
        await store.flush()
        assert seqs(await store.read_events(last - 1, 10)) == [last, last + 1]
        assert (await store.read_events(last, 10, "w2")) == [event(last + 1, worker_id="w2")]
    finally:
        await store.close()

    assert int(_meta(path)["schema_version"]) == schema.SCHEMA_VERSION == 2
    tables = _tables(path)
    assert {"event_chunks", "event_chunks_by_worker"} <= tables
    assert not {"events", "events_by_worker", "transcript_seq", "run_inputs_by_worker"} & tables

    reopened = SqliteStore(path, retention_events=100, retention_interval=0.0)
    await reopened.open("rt-unused")
    try:
        assert await reopened.read_events(0, 10_000) == [*events, event(last + 1, worker_id="w2")]
        reopened.write([event(last + 2)])  # retention trims to the newest 100, exactly
        await reopened.flush()
        got = await reopened.read_events(0, 10_000)
        assert seqs(got) == list(range(last + 2 - 99, last + 3))
        assert reopened.oldest_seq() == last + 2 - 99
    finally:
        await reopened.close()


async def test_a_failed_migration_leaves_the_version_1_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runtime.db"
    write_v1_file(path, _content())
    before = _tables(path)
    real = schema.MIGRATIONS[1]

    def broken(conn: sqlite3.Connection) -> None:
        real(conn)  # the whole migration, then a failure: everything rolls back
        raise sqlite3.OperationalError("the migration failed midway")

    monkeypatch.setattr(schema, "MIGRATIONS", {1: broken})
    with pytest.raises(StoreOpenError, match="the migration failed midway"):
        await SqliteStore(path).open("rt-unused")
    assert int(_meta(path)["schema_version"]) == 1
    assert _tables(path) == before
    monkeypatch.undo()
    store = SqliteStore(path)
    await store.open("rt-unused")  # and it migrates once the failure is gone
    await store.close()
    assert int(_meta(path)["schema_version"]) == 2


async def test_a_version_2_file_is_refused_by_a_version_1_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "runtime.db"
    store = SqliteStore(path)
    await store.open(RUNTIME_ID)
    store.write([event(1)])
    await store.close()
    before = path.read_bytes()
    monkeypatch.setattr(schema, "SCHEMA_VERSION", 1)  # the version-1 build's check, unchanged
    with pytest.raises(StoreOpenError, match="schema_version 2 is newer than this build"):
        await SqliteStore(path).open("rt-unused")
    assert path.read_bytes() == before
