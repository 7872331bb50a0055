"""``serve`` startup through the real CLI: a corrupt store file and one from a newer schema each
make it exit non-zero with a message naming the file, and leave the file byte-identical;
``--store memory`` works; the default data dir is ./worker-runtime-data under the working
directory and the banner says where."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from serving import ServeProcessFactory, files_of, run_serve, serve_argv

from runtime_server.store import SCHEMA_VERSION, SqliteStore

DB_NAME = "runtime.sqlite3"  # the file serve keeps under --data-dir


async def make_store(data: Path) -> Path:
    path = data / DB_NAME
    store = SqliteStore(path)
    await store.open("rt-existing")
    await store.close()
    return path


def corrupt_pages(path: Path) -> None:
    """Keep the SQLite header, overwrite the rest of the first page and beyond with garbage."""
    raw = bytearray(path.read_bytes())
    raw[100:] = bytes((i * 7 + 13) % 256 for i in range(len(raw) - 100))
    path.write_bytes(bytes(raw))


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database\n" * 200)


def newer_schema(path: Path) -> None:
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "UPDATE meta SET value = ? WHERE key = 'schema_version'", (SCHEMA_VERSION + 1,)
        )
    conn.close()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (garbage, "not an SQLite database"),
        (corrupt_pages, "SQLite database"),
        (newer_schema, f"schema_version {SCHEMA_VERSION + 1} is newer"),
    ],
    ids=["garbage", "corrupt-pages", "newer-schema"],
)
async def test_bad_store_file_fails_startup_and_is_left_untouched(
    tmp_path: Path, damage: Callable[[Path], None], expected: str
) -> None:
    data = tmp_path / "data"
    path = await make_store(data)
    damage(path)
    (data / f"{DB_NAME}.lock").unlink(missing_ok=True)
    before = dict(files_of(data))

    done = await asyncio.to_thread(run_serve, serve_argv(data))
    assert done.returncode != 0
    assert "serving on" not in done.stdout
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: cannot open store")
    assert str(path) in message
    assert expected in message
    # never a silent reset: the file (and everything else there but the lock) is as it was
    after = dict(files_of(data))
    after.pop(f"{DB_NAME}.lock", None)
    assert after == before


async def test_store_memory(serve_process: ServeProcessFactory, tmp_path: Path) -> None:
    sp = await serve_process(None, store="memory", cwd=tmp_path)
    assert "store      memory (nothing persists)" in sp.banner
    info = await sp.client().get_runtime()
    assert info.store_kind == "memory"
    assert info.limits.event_retention_events > 0
    assert sp.terminate() == 0
    assert not (tmp_path / "worker-runtime-data").exists()


async def test_default_data_dir_is_in_the_working_directory(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    sp = await serve_process(None, cwd=tmp_path)  # no --data-dir
    path = (tmp_path / "worker-runtime-data" / DB_NAME).resolve()
    assert f"store      sqlite {path} (durability process)" in sp.banner
    client = sp.client()
    info = await client.get_runtime()
    assert info.store_kind == "sqlite"
    w = (await client.create_worker()).worker.worker_id
    assert path.is_file()
    assert sp.terminate() == 0

    sp = await serve_process(None, cwd=tmp_path)  # the same dir again: the worker is back
    assert (await sp.client().get_worker(w)).worker_id == w
    assert (await sp.client().get_runtime()).runtime_id == info.runtime_id
    assert sp.terminate() == 0
