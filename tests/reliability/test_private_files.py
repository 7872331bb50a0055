"""What the Runtime and the Backend keep on disk is private to the user running them.

The SQLite store holds every transcript, input and tool output (a tool may read a ``.env``).
Before, ``serve`` created its data directory 0755 and ``runtime.sqlite3`` (with its ``-wal`` and
``-shm``) 0644 under the usual umask 022, so every local user could read every conversation; the
Backend's data directory and ``worker-backend cluster``'s base directory likewise; and the
cluster's bearer token file kept the mode (or the link target) of whatever was at its path. Now a
data directory the program creates is 0700, a new SQLite file (and so its WAL and shared-memory
files, which SQLite creates with the database's mode) 0600, and the token file is always a new
0600 file. Real ``serve`` and ``worker-backend cluster`` processes, under umask 022.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from serving import PYTHON, REPO_ROOT, START_TIMEOUT, ServeProcessFactory, env, eventually

CONSOLE = re.compile(r"^console: (http://127\.0\.0\.1:\d+)$", re.MULTILINE)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)  # inherited by the processes started below
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_serve_creates_a_private_data_dir_and_store(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    data = tmp_path / "data"
    sp = await serve_process(data)
    client = sp.client()
    await client.create_worker(display_name="keeps the WAL busy")
    assert mode(data) == 0o700
    for name in ("runtime.sqlite3", "runtime.sqlite3-wal", "runtime.sqlite3-shm"):
        assert mode(data / name) == 0o600, name
    assert sp.terminate() == 0
    assert mode(data / "runtime.sqlite3") == 0o600  # restarts keep it


async def test_the_cluster_keeps_its_token_and_data_private(tmp_path: Path) -> None:
    base = tmp_path / "cluster"
    base.mkdir(mode=0o755)
    older = base / "runtime.token"
    older.write_text("an older token\n")
    older.chmod(0o644)
    out_path = tmp_path / "cluster.out"
    argv = [str(PYTHON), "-m", "backend.cli", "cluster", "--base-dir", str(base)]
    argv += ["--runtimes", "1", "--listen", "127.0.0.1:0", "--grace", "1"]
    with out_path.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - only forks; the wait below polls
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env()
        )
    try:

        def started() -> bool:
            assert proc.poll() is None, out_path.read_text(errors="replace")
            return CONSOLE.search(out_path.read_text(errors="replace")) is not None

        await eventually(started, within=START_TIMEOUT * 3, what="the cluster started")
        assert mode(base / "runtime.token") == 0o600
        assert (base / "runtime.token").read_text() != "an older token\n"
        assert mode(base / "runtime-1" / "data") == 0o700
        assert mode(base / "runtime-1" / "data" / "runtime.sqlite3") == 0o600
        backend_data = base / "backend-data"
        assert mode(backend_data) == 0o700
        assert mode(backend_data / "runtime.sqlite3") == 0o600
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(proc.wait, START_TIMEOUT * 2)
