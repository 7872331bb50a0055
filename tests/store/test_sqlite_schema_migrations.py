"""The SQLite file format's versioning (runtime_server.store._sqlite_schema): every older schema
version has its migration, and opening an older file runs the migrations in order, inside the
opening transaction, and records the new version — on a real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from runtime_server.store import SCHEMA_VERSION, SqliteStore, StoreOpenError, schema


def test_every_older_version_has_a_migration() -> None:
    assert schema.SCHEMA_VERSION == SCHEMA_VERSION
    assert set(schema.MIGRATIONS) == set(range(1, SCHEMA_VERSION))


def _meta(path: Path) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        return dict(conn.execute("SELECT key, value FROM meta").fetchall())
    finally:
        conn.close()


async def _a_current_file(directory: Path) -> Path:
    path = directory / "runtime.sqlite3"
    store = SqliteStore(path)
    await store.open("rt-old")
    await store.close()
    return path


def _tables(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    finally:
        conn.close()


async def test_an_older_file_is_migrated_in_order_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await _a_current_file(tmp_path)
    assert int(_meta(path)["schema_version"]) == SCHEMA_VERSION

    ran: list[int] = []

    def step(version: int) -> schema.Migration:
        def migrate(conn: sqlite3.Connection) -> None:
            ran.append(version)
            conn.execute(f"CREATE TABLE migrated_{version} (x INTEGER)")

        return migrate

    # this build pretends to be two versions newer than the file
    newer = SCHEMA_VERSION + 2
    monkeypatch.setattr(schema, "SCHEMA_VERSION", newer)
    monkeypatch.setattr(schema, "MIGRATIONS", {v: step(v) for v in range(SCHEMA_VERSION, newer)})
    store = SqliteStore(path)
    state = await store.open("rt-unused")
    await store.close()

    assert ran == [SCHEMA_VERSION, SCHEMA_VERSION + 1]
    assert state.runtime_id == "rt-old"  # migrated, never reset
    assert int(_meta(path)["schema_version"]) == newer
    tables = _tables(path)
    assert {f"migrated_{SCHEMA_VERSION}", f"migrated_{SCHEMA_VERSION + 1}"} <= tables


async def test_a_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = await _a_current_file(tmp_path)

    def broken(conn: sqlite3.Connection) -> None:
        conn.execute("CREATE TABLE half_done (x INTEGER)")
        raise sqlite3.OperationalError("the migration failed midway")

    monkeypatch.setattr(schema, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    monkeypatch.setattr(schema, "MIGRATIONS", {SCHEMA_VERSION: broken})
    with pytest.raises(StoreOpenError, match="the migration failed midway"):
        await SqliteStore(path).open("rt-unused")

    assert int(_meta(path)["schema_version"]) == SCHEMA_VERSION
    tables = _tables(path)
    assert "half_done" not in tables
