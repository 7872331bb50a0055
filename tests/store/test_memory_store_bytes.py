"""The memory store bounds its event log by estimated bytes too (``retention_bytes``: the Runtime
gives it half of ``max_memory_bytes``), so the log alone can never fill the memory budget; its
transcripts and inputs are what count against the rest."""

from __future__ import annotations

from store_samples import event, seqs

from runtime_server.model import TextDelta
from runtime_server.store import MemoryStore


async def test_events_are_trimmed_by_bytes_oldest_first() -> None:
    store = MemoryStore(retention_bytes=20_000)
    await store.open("rt")
    for s in range(1, 101):
        store.write([event(s, payload=TextDelta("x" * 1_000))])
    held = store.memory_bytes()
    assert held <= 20_000
    kept = seqs(await store.read_events(0, 1_000))
    assert kept == list(range(store.oldest_seq(), 101))  # a suffix: the newest, gap-free
    assert 10 <= len(kept) < 20
    # one event larger than the whole bound is kept (the newest never goes), alone
    store.write([event(101, payload=TextDelta("y" * 50_000))])
    assert seqs(await store.read_events(0, 1_000)) == [101]
    assert store.memory_bytes() > 50_000


async def test_no_byte_bound_by_default() -> None:
    store = MemoryStore()
    await store.open("rt")
    for s in range(1, 51):
        store.write([event(s, payload=TextDelta("x" * 10_000))])
    assert len(await store.read_events(0, 1_000)) == 50
    assert store.memory_bytes() >= 50 * 10_000
