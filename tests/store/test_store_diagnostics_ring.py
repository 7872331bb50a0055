"""The diagnostics ring and the Runtime's free-form meta values in the store (issue 8 items 11 and
6): every backend keeps the newest ``keep`` diagnostics, in order (contract); the SQLite file hands
them back, with the meta values, when it is opened again — also a version-1 file created before
the diagnostics table existed."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from store_samples import StoreFactory, event

from runtime_server.model import Diagnostic, DiagnosticLevel
from runtime_server.store import PutDiagnostic, PutMeta, SqliteStore


def diagnostic(n: int) -> Diagnostic:
    return Diagnostic(DiagnosticLevel.WARNING, f"CODE_{n}", f"message {n} ✓", 1_700_000_000.0 + n)


async def test_the_diagnostics_ring_keeps_the_newest(make_store: StoreFactory) -> None:
    store = await make_store()
    assert await store.read_diagnostics() == []
    for n in range(1, 9):
        d = diagnostic(n)
        store.write([event(n, payload=d)], [PutDiagnostic(n, d, keep=5)])
    await store.flush()
    assert await store.read_diagnostics() == [(n, diagnostic(n)) for n in range(4, 9)]
    # a smaller bound applies from the next write on
    store.write([event(9, payload=diagnostic(9))], [PutDiagnostic(9, diagnostic(9), keep=2)])
    await store.flush()
    assert await store.read_diagnostics() == [(8, diagnostic(8)), (9, diagnostic(9))]


async def test_sqlite_reopen_returns_the_ring_and_the_meta_values(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    store = SqliteStore(path)
    state = await store.open("rt-1")
    assert state.meta == {}
    for n in range(1, 4):
        store.write([event(n, payload=diagnostic(n))], [PutDiagnostic(n, diagnostic(n), keep=2)])
    store.write([], [PutMeta("test.key", '{"a": 1}'), PutMeta("test.key", '{"a": 2}')])
    await store.close()

    store = SqliteStore(path)
    state = await store.open("rt-2")
    try:
        assert state.runtime_id == "rt-1"
        assert state.meta == {"test.key": '{"a": 2}'}  # only namespaced keys: not the store's own
        assert await store.read_diagnostics() == [(2, diagnostic(2)), (3, diagnostic(3))]
    finally:
        await store.close()


async def test_a_file_without_the_diagnostics_table_gains_it(tmp_path: Path) -> None:
    path = tmp_path / "runtime.sqlite3"
    store = SqliteStore(path)
    await store.open("rt-1")
    await store.close()
    with sqlite3.connect(path) as conn:  # as a version-1 file written before the table existed
        conn.execute("DROP TABLE diagnostics")
    conn.close()

    store = SqliteStore(path)
    await store.open("rt-1")
    try:
        store.write([event(1, payload=diagnostic(1))], [PutDiagnostic(1, diagnostic(1), keep=5)])
        await store.flush()
        assert await store.read_diagnostics() == [(1, diagnostic(1))]
    finally:
        await store.close()
