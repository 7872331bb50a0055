"""The Runtime keeps only a window of each transcript (``transcript_window_bytes`` per worker,
``transcript_cache_bytes`` in all); the rest is read from the store. Through a real server, with
windows small enough that most of every transcript lives only in the store: every run still sends
the model its whole history (the echo provider reports a prompt's word count as input tokens),
GetTranscript pages through every entry in order, and a deleted worker's history is freed."""

from __future__ import annotations

import gc
import weakref
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime_client import RunState
from runtime_server.model import Limits
from runtime_server.store import MemoryStore, SqliteStore, Store

if TYPE_CHECKING:
    from conftest import ServeFactory

# A few small entries per window, two windows in the cache: three workers keep evicting.
SMALL = replace(Limits(), transcript_window_bytes=3_000, transcript_cache_bytes=6_000)


def _store(kind: str, tmp_path: Path) -> Store:
    return MemoryStore() if kind == "memory" else SqliteStore(tmp_path / "rt.sqlite3")


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
async def test_histories_and_pages_beyond_the_window(
    serve: ServeFactory, tmp_path: Path, kind: str
) -> None:
    served = await serve(limits=SMALL, store=_store(kind, tmp_path))
    client = served.client
    workers = [(await client.create_worker()).worker.worker_id for _ in range(3)]
    runs = 8
    for j in range(runs):
        for n, wid in enumerate(workers):
            accepted = await client.send_input(wid, f"w{n} run{j} three")
            run = await client.wait_run(accepted.run.run_id, timeout=30)
            assert run.state is RunState.COMPLETED
            # j earlier inputs and answers of 3 words each, then this input
            assert run.usage.input_tokens == 3 * (2 * j + 1), (kind, n, j)
    for n, wid in enumerate(workers):
        texts: list[str] = []
        indexes: list[int] = []
        token = ""
        while True:
            page = await client.get_transcript(wid, page_size=3, page_token=token)
            assert page.total_size == 2 * runs
            texts += [e.message.text for e in page.items]
            indexes += [e.index for e in page.items]
            token = page.next_page_token
            if not token:
                break
        assert indexes == list(range(2 * runs))
        assert texts == [f"w{n} run{j} three" for j in range(runs) for _ in (0, 1)]


async def test_deleted_workers_history_is_freed(serve: ServeFactory, tmp_path: Path) -> None:
    """Nothing in the Runtime (window, history, the echo provider's prompt memo) keeps a deleted
    worker's messages alive."""
    served = await serve(store=SqliteStore(tmp_path / "rt.sqlite3"))
    client, rt = served.client, served.runtime
    wid = (await client.create_worker()).worker.worker_id
    for j in range(3):
        accepted = await client.send_input(wid, f"message {j}")
        await client.wait_run(accepted.run.run_id, timeout=30)
    entries = (await rt.get_transcript(wid)).items  # the window's own objects
    assert len(entries) == 6
    refs = [weakref.ref(e.message) for e in entries]
    del entries
    await client.delete_worker(wid)
    gc.collect()
    assert [r() for r in refs] == [None] * 6
