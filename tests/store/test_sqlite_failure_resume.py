"""The SQLite store after a failed write, and its start-up checks on seqs: a failure discards what
was not reported (the log ends where the report says), fails fast until ``resume()``, and the
writer then commits again by itself; a damaged row fails the store for good; a log that ends
below its high-water mark, or disagrees with its meta row, is refused untouched."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from store_samples import event, seqs, worker

from runtime_server.errors import StoreFailure
from runtime_server.store import PutMeta, PutWorker, SqliteStore, StoreCorrupt, StoreOpenError


async def opened(path: Path) -> SqliteStore:
    store = SqliteStore(path, retention_interval=0.0)
    await store.open("rt-x")
    return store


def files_of(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in directory.iterdir() if p.suffix != ".lock"}


async def write_until_refused(store: SqliteStore) -> StoreFailure | None:
    for seq in range(4, 204):
        try:
            store.write([event(seq)])
            await store.flush()
        except StoreFailure as exc:
            return exc
    return None


async def test_disk_full_discards_fails_fast_and_resumes(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    reported: list[int] = []
    failures: list[StoreFailure] = []
    store.set_commit_listener(reported.append)
    store.set_failure_listener(failures.append)
    store.write([event(1)], [PutWorker(worker("w1"))])
    await store.flush()
    assert store._conn is not None
    # SQLITE_FULL, as a full disk reports it: the file may not grow.
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    store.write([event(s, payload=None) for s in range(2, 3000)])
    with pytest.raises(StoreFailure, match="nothing after seq 1 was committed"):
        await store.flush()
    assert len(failures) == 1
    assert reported == [1]
    with pytest.raises(StoreFailure):  # fails fast: nothing queues behind a dead disk
        store.write([event(2)])
    with pytest.raises(StoreFailure):
        await store.flush()
    state = await store.reload()  # the committed state, to roll memory back to
    assert (state.last_seq, [w.worker_id for w in state.workers]) == (1, ["w1"])

    store._conn.execute("PRAGMA max_page_count = 1073741823")  # space is back
    store.resume()
    # The discarded seqs were never reported: the log continues right after the reported one.
    store.write([event(2)], [PutMeta("store.test", 1)])
    await store.flush()
    assert reported == [1, 2]
    assert seqs(await store.read_events(0, 10)) == [1, 2]
    assert (path.with_name(path.name + ".hwm")).read_text().strip() == "2".zfill(20)
    await store.close()


async def test_damaged_row_fails_the_store_for_good(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    for s in (1, 2, 3):  # three transactions: three rows of the log (event chunks)
        store.write([event(s)])
        await store.flush()
    failures: list[StoreFailure] = []
    store.set_failure_listener(failures.append)
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE event_chunks SET body = ? WHERE last_seq = 2", (b"\xffnot json",))
    conn.close()
    with pytest.raises(StoreCorrupt, match="damaged"):
        await store.read_events(0, 10)
    assert seqs(await store.read_events(2, 10)) == [3]  # the rest stays readable
    refused = await write_until_refused(store)  # the writer hears of it, then reports it
    assert isinstance(refused, StoreFailure)
    assert failures
    assert isinstance(failures[-1], StoreCorrupt)
    with pytest.raises(StoreCorrupt):
        store.resume()  # never written to again
    with pytest.raises(StoreFailure):
        await store.close()


async def test_log_below_its_high_water_mark_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = await opened(path)
    store.write([event(s) for s in range(1, 6)])
    await store.close()
    mark = path.with_name(path.name + ".hwm")
    assert int(mark.read_text()) == 5
    mark.write_text(f"{9:020d}\n")  # as if seqs 6..9 had been committed, then lost with the WAL
    before = files_of(tmp_path)
    with pytest.raises(StoreOpenError, match="ends at seq 5 but seq 9 was committed") as info:
        await SqliteStore(path).open("rt-y")
    assert str(path) in str(info.value)
    assert files_of(tmp_path) == before

    # The operator's way out: accept the loss; the lost seqs are skipped, never handed out again.
    store = SqliteStore(path, accept_seq_loss=True)
    state = await store.open("rt-y")
    assert state.last_seq == 9
    store.write([event(10)])
    await store.flush()
    assert seqs(await store.read_events(0, 20)) == [1, 2, 3, 4, 5, 10]
    await store.close()
    store = await opened(path)  # consistent from now on: no flag needed
    await store.close()

    mark.write_text("garbage")
    with pytest.raises(StoreOpenError, match=r"high-water mark .* is damaged"):
        await SqliteStore(path).open("rt-y")

    mark.unlink()  # no mark (a store from before it existed): recreated from the log
    store = await opened(path)
    await store.close()
    assert int(mark.read_text()) == 10
