"""Config bundles and worker profile snapshots in the store: the contract both backends keep
(``make_store``), then what only a durable store can show (reopen; a file made before the
tables existed gains them)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from store_samples import RUNTIME_ID, StoreFactory, event, worker

from runtime_server.model import ConfigBundle
from runtime_server.store import (
    DeleteConfigBundle,
    DeleteWorkerData,
    PutConfigBundle,
    PutWorker,
    PutWorkerProfile,
    SqliteStore,
)

CONTENT = b'[profiles.a]\nprovider = "builtin"\nmodel = "m"\n\x00\xff raw bytes kept as sent'


def bundle(bundle_id: str = "team", digest: str = "sha256:" + "a" * 64) -> ConfigBundle:
    return ConfigBundle(
        id=bundle_id,
        digest=digest,
        media_type="application/vnd.worker-runtime.bundle.v1+toml",
        size_bytes=len(CONTENT),
        created_at=1_700_000_000.5,
        profiles=("a", "b"),
        annotations={"source": "git:abc", "ü": "✓"},
    )


async def test_bundle_bytes_round_trip_exactly_and_delete_removes_them(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    assert await store.read_config_bundle("team", bundle().digest) is None
    store.write([], [PutConfigBundle(bundle(), CONTENT)])
    other = bundle(digest="sha256:" + "b" * 64)
    store.write([event(1)], [PutConfigBundle(other, b"v2")])
    await store.flush()
    assert await store.read_config_bundle("team", bundle().digest) == CONTENT
    assert await store.read_config_bundle("team", other.digest) == b"v2"
    assert await store.read_config_bundle("other", bundle().digest) is None

    store.write([], [DeleteConfigBundle("team", bundle().digest)])
    await store.flush()
    assert await store.read_config_bundle("team", bundle().digest) is None
    assert await store.read_config_bundle("team", other.digest) == b"v2"


async def test_a_bundle_is_written_once_the_same_pair_again_keeps_the_first(
    make_store: StoreFactory,
) -> None:
    store = await make_store()
    store.write([], [PutConfigBundle(bundle(), CONTENT)])
    store.write([], [PutConfigBundle(bundle(), b"something else")])  # never done by the Runtime
    await store.flush()
    assert await store.read_config_bundle("team", bundle().digest) == CONTENT


async def test_memory_store_counts_bundle_bytes(make_store: StoreFactory) -> None:
    store = await make_store()
    before = store.memory_bytes()
    store.write([], [PutConfigBundle(bundle(), CONTENT)])
    await store.flush()
    grown = store.memory_bytes() - before
    store.write([], [DeleteConfigBundle("team", bundle().digest)])
    await store.flush()
    if store.kind == "memory":
        assert grown == len(CONTENT)
        assert store.memory_bytes() == before
    else:
        assert grown == 0  # on disk


async def test_sqlite_reopen_restores_bundles_and_snapshots_until_deleted(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = SqliteStore(path, retention_interval=0.0)
    await store.open(RUNTIME_ID)
    store.write(
        [event(1)],
        [
            PutConfigBundle(bundle(), CONTENT),
            PutWorker(worker("w1")),
            PutWorkerProfile("w1", '{"profile":"a"}'),
            PutWorker(worker("w2")),
            PutWorkerProfile("w2", '{"profile":"b"}'),
        ],
    )
    await store.close()

    store = SqliteStore(path, retention_interval=0.0)
    state = await store.open("rt-new")
    assert state.config_bundles == [bundle()]
    assert state.worker_profiles == {"w1": '{"profile":"a"}', "w2": '{"profile":"b"}'}
    assert await store.read_config_bundle("team", bundle().digest) == CONTENT
    store.write([event(2)], [DeleteWorkerData("w1"), DeleteConfigBundle("team", bundle().digest)])
    await store.close()

    store = SqliteStore(path, retention_interval=0.0)
    state = await store.open("rt-new")
    assert state.config_bundles == []
    assert state.worker_profiles == {"w2": '{"profile":"b"}'}
    assert (await store.reload()).worker_profiles == {"w2": '{"profile":"b"}'}
    await store.close()


async def test_a_file_made_before_the_tables_gains_them(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = SqliteStore(path, retention_interval=0.0)
    await store.open(RUNTIME_ID)
    await store.close()
    with sqlite3.connect(path) as conn:  # as a build without config bundles left the file
        conn.execute("DROP TABLE config_bundles")
        conn.execute("DROP TABLE worker_profiles")
    store = SqliteStore(path, retention_interval=0.0)
    state = await store.open("rt-new")
    assert state.runtime_id == RUNTIME_ID
    store.write([], [PutConfigBundle(bundle(), CONTENT)])
    await store.flush()
    assert await store.read_config_bundle("team", bundle().digest) == CONTENT
    await store.close()
