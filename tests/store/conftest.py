"""Fixtures of the store tests: ``make_store`` is parametrized over every backend, so each test that
takes it is a contract test both backends must pass — SQLite in both durabilities (power's fsync per
commit takes the writer's slower paths too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from store_samples import RUNTIME_ID, StoreFactory

from runtime_server.store import MemoryStore, SqliteStore, Store


@pytest.fixture(params=["memory", "sqlite", "sqlite-power"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    opened: list[Store] = []

    async def factory(
        *, retention_events: int = 1_000_000, retention_seconds: float = 0.0
    ) -> Store:
        store: Store
        if request.param == "memory":
            store = MemoryStore(
                retention_events=retention_events, retention_seconds=retention_seconds
            )
        else:
            # retention_interval=0: retention after every transaction, so both backends agree
            # exactly once flush() returns.
            store = SqliteStore(
                tmp_path / f"store{len(opened)}" / "runtime.db",
                retention_events=retention_events,
                retention_seconds=retention_seconds,
                retention_interval=0.0,
                durability="power" if request.param == "sqlite-power" else "process",
            )
        await store.open(RUNTIME_ID)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()
