"""The seq high-water mark (``<file>.hwm``, see ``runtime_server.store._integrity``) is on disk,
for any other process to read, before the seq it records is reported (a ``pwrite`` into the page
cache, so it survives ``kill -9``), and the file keeps its form."""

from __future__ import annotations

from pathlib import Path

from store_samples import event

from runtime_server.store import SqliteStore


async def opened(path: Path) -> SqliteStore:
    store = SqliteStore(path, retention_interval=3600.0)
    await store.open("rt-mark")
    return store


async def test_the_mark_is_on_disk_when_a_seq_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    mark = path.with_name(path.name + ".hwm")
    store = await opened(path)
    seen: list[tuple[int, int]] = []  # (reported seq, the mark read from the file right then)
    store.set_commit_listener(lambda seq: seen.append((seq, int(mark.read_bytes()))))
    try:
        seq = 0
        for size in (1, 3, 1, 7, 2):
            store.write([event(seq + i + 1) for i in range(size)])
            seq += size
            await store.flush()
    finally:
        await store.close()
    assert [s for s, _ in seen][-1] == seq
    assert all(on_disk >= reported for reported, on_disk in seen), seen
    assert mark.read_bytes() == b"%020d\n" % seq  # the file's form is unchanged
