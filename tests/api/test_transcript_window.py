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
from typing import TYPE_CHECKING, Any

import pytest

from runtime_client import RunState
from runtime_server.model import Limits
from runtime_server.store import MemoryStore, SqliteStore, Store

if TYPE_CHECKING:
    from serving import ServeFactory

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


class _CountingStore(SqliteStore):
    """The real SQLite store, counting transcript reads (what the window did not have)."""

    transcript_reads = 0

    async def read_transcript(self, worker_id: str, start: int, limit: int) -> list[Any]:
        self.transcript_reads += 1
        return await super().read_transcript(worker_id, start, limit)


async def test_window_accounting_does_not_drift(serve: ServeFactory, tmp_path: Path) -> None:
    """CPython caches a text's UTF-8 form inside the string once something encodes it (here
    GetTranscript, converting the window's entries to protobuf), so a non-ASCII text measures
    larger later than when it came in. A window must subtract what it added: otherwise its count
    drifts low and it keeps more than its bound. Here a window of 2.5 MB holds two 1.2 MB entries
    as they measured when they came in; each run's entries are read (and so grow to 2.4 MB) before
    the next run, so after two runs the window holds entries 2 and 3 only, and entry 1 is read
    from the store. (The store itself never grows a caller's string: test_sqlite_store.)"""
    # pages are cut at a quarter of max_message_bytes of encoded size: 16 MiB lets a page carry
    # both 1.2 MB entries
    limits = replace(Limits(), transcript_window_bytes=2_500_000, max_message_bytes=16 * 2**20)
    store = _CountingStore(tmp_path / "rt.sqlite3")
    served = await serve(limits=limits, store=store)
    client = served.client
    wid = (await client.create_worker()).worker.worker_id
    for _ in range(2):
        accepted = await client.send_input(wid, "\U0001f600" * 300_000)  # 1.2 MB in CPython
        await client.wait_run(accepted.run.run_id, timeout=30)
        await client.get_transcript(wid, page_size=4)  # encodes the window's entries
    first = await client.get_transcript(wid, page_size=1)
    reads = store.transcript_reads
    second = await client.get_transcript(wid, page_size=1, page_token=first.next_page_token)
    assert [e.index for e in second.items] == [1]
    assert store.transcript_reads == reads + 1, "the window kept more than its bound"
