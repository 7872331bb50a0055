"""The Store contract, on-demand reads: ``read_transcript``, ``read_run_input`` and
``memory_bytes``. Part of the contract suite: every test runs against every backend (``make_store``
in conftest), so the Runtime can rely on both alike when it keeps only a window in memory."""

from __future__ import annotations

from dataclasses import replace

from store_samples import StoreFactory, entry, event, run, worker

from engine import Message, Role
from runtime_server.model import RunState, TranscriptEntry
from runtime_server.store import AppendTranscript, DeleteWorkerData, PutRun, PutWorker


def _entries(worker_id: str, n: int) -> list[TranscriptEntry]:
    return [entry(worker_id, i, Message(Role.USER, f"{worker_id} message {i}")) for i in range(n)]


async def test_read_transcript_pages_by_index(make_store: StoreFactory) -> None:
    store = await make_store()
    a, b = _entries("wa", 7), _entries("wb", 3)
    store.write([event(1, "wa")], [PutWorker(worker("wa")), *map(AppendTranscript, a[:4])])
    store.write([event(2, "wb")], [PutWorker(worker("wb")), *map(AppendTranscript, b)])
    store.write([event(3, "wa")], [AppendTranscript(e) for e in a[4:]])
    await store.flush()
    assert await store.read_transcript("wa", 0, 100) == a
    assert await store.read_transcript("wa", 2, 3) == a[2:5]
    assert await store.read_transcript("wa", 5, 100) == a[5:]
    assert await store.read_transcript("wa", 7, 10) == []
    assert await store.read_transcript("wa", 0, 0) == []
    assert await store.read_transcript("wb", 1, 1) == b[1:2]
    assert await store.read_transcript("nobody", 0, 10) == []


async def test_transcript_entry_written_again_replaces_it(make_store: StoreFactory) -> None:
    store = await make_store()
    first = entry("w1", 0, Message(Role.USER, "first"))
    again = entry("w1", 0, Message(Role.USER, "first, again"))
    store.write([event(1)], [AppendTranscript(first), AppendTranscript(again)])
    await store.flush()
    assert await store.read_transcript("w1", 0, 10) == [again]


async def test_read_run_input_survives_a_record_without_text(make_store: StoreFactory) -> None:
    """The Runtime writes a run with its input when it is queued, then without it (metadata only)
    once it starts: the input must still be readable."""
    store = await make_store()
    queued = run("r1", "w1", state=RunState.QUEUED, input_text="the input \U0001f600")
    store.write([event(1)], [PutWorker(worker("w1")), PutRun(queued)])
    store.write([event(2)], [PutRun(replace(queued, state=RunState.RUNNING, input_text=""))])
    store.write([], [PutRun(run("r2", "w1", input_text="other"))])
    await store.flush()
    assert await store.read_run_input("r1") == "the input \U0001f600"
    assert await store.read_run_input("r2") == "other"
    assert await store.read_run_input("unknown") is None


async def test_an_input_with_a_lone_surrogate_is_kept_and_fails_nothing(
    make_store: StoreFactory,
) -> None:
    """The Runtime refuses such text on input, but the store must not rely on it: SQLite could not
    bind it, and the failed transaction failed the whole store (every worker's writes)."""
    store = await make_store()
    odd = run("r1", "w1", state=RunState.QUEUED, input_text="half a pair \ud800 here")
    store.write([event(1)], [PutWorker(worker("w1")), PutRun(odd)])
    store.write([event(2)], [PutRun(run("r2", "w1", input_text="next"))])
    await store.flush()
    assert await store.read_run_input("r1") == "half a pair \ud800 here"
    assert await store.read_run_input("r2") == "next"
    assert [e.seq for e in await store.read_events(0, 10)] == [1, 2]


async def test_delete_worker_data_drops_transcript_and_inputs(make_store: StoreFactory) -> None:
    store = await make_store()
    store.write(
        [event(1, "w1")],
        [
            PutWorker(worker("w1")),
            PutRun(run("r1", "w1", input_text="gone")),
            *map(AppendTranscript, _entries("w1", 3)),
            PutWorker(worker("w2")),
            PutRun(run("r2", "w2", input_text="kept")),
            *map(AppendTranscript, _entries("w2", 2)),
        ],
    )
    store.write([event(2, "w1")], [DeleteWorkerData("w1")])
    await store.flush()
    assert await store.read_transcript("w1", 0, 10) == []
    assert await store.read_run_input("r1") is None
    assert await store.read_transcript("w2", 0, 10) == _entries("w2", 2)
    assert await store.read_run_input("r2") == "kept"


async def test_memory_bytes_follows_what_is_kept_in_memory(make_store: StoreFactory) -> None:
    """The memory store counts its data (it IS the storage) and gives it back on delete; a store
    whose data is on disk reports none. Either way the figure never goes negative."""
    store = await make_store()
    empty = store.memory_bytes()
    big = "\U0001f600" * 100_000  # four bytes a character in CPython: ~400 kB
    store.write(
        [event(1, "w1")],
        [
            PutRun(run("r1", "w1", input_text=big)),
            AppendTranscript(entry("w1", 0, Message(Role.USER, big))),
        ],
    )
    await store.flush()
    held = store.memory_bytes()
    if store.kind == "memory":
        assert held >= empty + 2 * 400_000
    else:
        assert held == 0
    store.write([event(2, "w1")], [DeleteWorkerData("w1")])
    await store.flush()
    assert 0 <= store.memory_bytes() < held or held == 0
