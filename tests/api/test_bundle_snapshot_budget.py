"""Issue 13 loose end: a worker's profile snapshot (the bundle profile resolved at CreateWorker,
kept in the Runtime's memory for its whole life) counts against ``max_memory_bytes`` like every
other record: it is admitted at create, shown in GetRuntime's ``memory_bytes``, given back on
delete and counted again after a restart. Real gRPC server and client, a real SQLite file (so the
bundle's own bytes live on disk and only the snapshots are in memory)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime_client import MemoryBudgetExceeded
from runtime_server.model import Limits
from runtime_server.store import SqliteStore

if TYPE_CHECKING:
    from serving import ServeFactory

PROMPT_CHARS = 150_000
BUNDLE = (
    '[profiles.big]\nprovider = "builtin"\nmodel = "echo"\n'
    f'system_prompt = "{"p" * PROMPT_CHARS}"\n'
).encode()


async def test_profile_snapshots_count_against_the_memory_budget(
    serve: ServeFactory, tmp_path: Path
) -> None:
    limits = Limits(max_memory_bytes=700_000)  # two snapshots fit, not three
    served = await serve(limits=limits, store=SqliteStore(tmp_path / "rt.sqlite3"))
    client = served.client
    put = await client.put_bundle("big", BUNDLE)
    before = (await client.get_runtime()).memory_bytes

    first = await client.create_worker(profile="big", config_bundle=put.bundle.ref)
    held = (await client.get_runtime()).memory_bytes
    assert held - before >= PROMPT_CHARS  # the snapshot is counted, not only a worker record

    second = await client.create_worker(profile="big", config_bundle=put.bundle.ref)
    # a third snapshot would take the runtime past its budget: refused, typed
    with pytest.raises(MemoryBudgetExceeded) as refused:
        await client.create_worker(profile="big", config_bundle=put.bundle.ref)
    assert refused.value.limit == limits.max_memory_bytes

    # deleting a worker gives its snapshot's bytes back, and the create fits again
    await client.delete_worker(first.worker.worker_id)
    assert (await client.get_runtime()).memory_bytes < held + PROMPT_CHARS
    await client.create_worker(profile="big", config_bundle=put.bundle.ref)
    assert second.worker.worker_id
    full = (await client.get_runtime()).memory_bytes

    # a restart on the same file counts the stored snapshots again
    await served.server.stop(5)
    again = await serve(limits=limits, store=SqliteStore(tmp_path / "rt.sqlite3"))
    assert (await again.client.get_runtime()).memory_bytes >= full - 2 * 2_000
    with pytest.raises(MemoryBudgetExceeded):
        await again.client.create_worker(profile="big", config_bundle=put.bundle.ref)
