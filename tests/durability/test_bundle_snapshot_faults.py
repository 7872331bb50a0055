"""A bundle worker whose snapshot cannot be used any more — its provider left the host config, or
the stored snapshot is unreadable — fails its runs with CONFIGURATION_ERROR (a clear run error),
never a crashed task; the worker and the rest of the runtime are unharmed. Real SQLite file."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from runtime_server.model import ConfigBundleRef, RunState
from runtime_server.runtime import Runtime, parse_config
from runtime_server.store import SqliteStore

BUNDLE = b'[profiles.helper]\nprovider = "slowecho"\nmodel = "echo"\nsystem_prompt = "S."\n'
HOST = {"providers": {"slowecho": {"kind": "echo"}}}


async def _worker_on_disk(path: Path) -> str:
    async with Runtime(store=SqliteStore(path), config=parse_config(HOST)) as rt:
        bundle, _ = await rt.config_bundles.put_bundle("team", BUNDLE)
        created = await rt.create_worker(
            profile="helper", config_bundle=ConfigBundleRef("team", bundle.digest)
        )
        accepted = await rt.send_input(created.worker.worker_id, "hi")
        assert (await rt.wait_run(accepted.run.run_id, timeout=30)).state is RunState.COMPLETED
        return created.worker.worker_id


@pytest.mark.parametrize("fault", ["provider gone", "snapshot unreadable"])
async def test_an_unusable_snapshot_fails_runs_clearly(tmp_path: Path, fault: str) -> None:
    path = tmp_path / "runtime.db"
    worker_id = await _worker_on_disk(path)
    config = HOST
    if fault == "provider gone":
        config = {}
    else:
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE worker_profiles SET snapshot = '{\"table\": 7}'")
        conn.close()
    async with Runtime(store=SqliteStore(path), config=parse_config(config)) as rt:
        accepted = await rt.send_input(worker_id, "hi")
        run = await rt.wait_run(accepted.run.run_id, timeout=30)
        assert run.state is RunState.FAILED
        assert run.error is not None
        assert run.error.code == "CONFIGURATION_ERROR"
        # the runtime is unharmed: another worker runs
        other = (await rt.create_worker()).worker
        done = await rt.send_input(other.worker_id, "still fine")
        assert (await rt.wait_run(done.run.run_id, timeout=30)).state is RunState.COMPLETED
