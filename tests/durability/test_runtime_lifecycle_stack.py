"""The Runtime's one lifecycle (resources on a stack, the aiohttp way), at real boundaries: a
real SQLite file, real threads and file descriptors, real runs on the built-in echo provider.

- A start that fails midway (the store opened, then reading its diagnostics finds a damaged row)
  releases what it had acquired: no SQLite thread, no lock, no file descriptor is left, and the
  Runtime is STOPPED (a later close() is a no-op).
- Close releases everything even when releases fail, and raises every failure together
  (RuntimeCloseError, an ExceptionGroup), instead of only logging them.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import engine
from runtime_server.errors import StoreFailure
from runtime_server.runtime import Profile, Runtime, RuntimeCloseError, RuntimeState, parse_config
from runtime_server.store import SqliteStore


def _sqlite_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("sqlite")]


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def _lock_is_free(path: Path) -> bool:
    fd = os.open(path.with_name(path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # (releases the lock just taken)
    return True


async def _store_with_a_damaged_diagnostic(path: Path) -> None:
    """A store file whose diagnostics ring holds a row that does not decode: the file opens (the
    start-up checks look at pages, not at rows), and reading the ring at start fails."""
    store = SqliteStore(path)
    await store.open("rt-damaged-diagnostic")
    await store.close()
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO diagnostics (number, body) VALUES (1, x'ff00ff00')")
    conn.close()


async def test_a_start_that_fails_midway_leaves_nothing_open(tmp_path: Path) -> None:
    path = tmp_path / "data" / "runtime.sqlite3"
    path.parent.mkdir()
    await _store_with_a_damaged_diagnostic(path)
    fds_before = _open_fds()
    threads_before = _sqlite_threads()
    runtime = Runtime(store=SqliteStore(path))

    with pytest.raises(StoreFailure):
        await runtime.start()

    assert runtime.state is RuntimeState.STOPPED
    assert _sqlite_threads() == threads_before  # writer, checkpointer, readers: all joined
    assert _lock_is_free(path)
    assert _open_fds() == fds_before  # connections, lock file: all closed
    await runtime.close()  # nothing left to release: a no-op
    await runtime.start()  # a failed Runtime does not start again
    assert runtime.state is RuntimeState.STOPPED


class _ClosesBadly:
    """The echo provider, whose aclose() fails (a provider that cannot release its connection)."""

    kind = "echo"

    def __init__(self, name: str) -> None:
        self.name = name
        self._echo = engine.EchoProvider()
        self.close_calls = 0

    def stream(self, request: engine.ModelRequest) -> AsyncIterator[engine.StreamEvent]:
        return self._echo.stream(request)

    async def aclose(self) -> None:
        self.close_calls += 1
        await asyncio.sleep(0)
        raise OSError(f"provider {self.name}: connection reset while closing")


async def test_close_runs_every_release_and_raises_every_failure(tmp_path: Path) -> None:
    path = tmp_path / "data" / "runtime.sqlite3"
    built: dict[str, _ClosesBadly] = {}
    threads_before = _sqlite_threads()

    def factory(profile: Profile) -> engine.Provider:
        built[profile.name] = _ClosesBadly(profile.name)
        return built[profile.name]

    config = parse_config(
        {"profiles": {"a": {"provider": "builtin"}, "b": {"provider": "builtin"}}}
    )
    runtime = Runtime(store=SqliteStore(path), config=config, provider_factory=factory)
    await runtime.start()
    for profile in ("a", "b"):
        worker = (await runtime.create_worker(profile=profile)).worker
        accepted = await runtime.send_input(worker.worker_id, "hello there")
        assert (await runtime.wait_run(accepted.run.run_id, timeout=30)).state.value == "COMPLETED"

    with pytest.raises(RuntimeCloseError) as info:
        await runtime.close()

    failures = info.value.exceptions
    assert sorted(str(e) for e in failures) == [
        "provider a: connection reset while closing",
        "provider b: connection reset while closing",
    ]
    assert all(isinstance(e, OSError) for e in failures)
    assert isinstance(info.value, ExceptionGroup)
    assert [p.close_calls for p in built.values()] == [1, 1]
    # the failures did not stop the other releases: the store is closed, its lock released
    assert runtime.state is RuntimeState.STOPPED
    assert _sqlite_threads() == threads_before
    assert _lock_is_free(path)
    # what was committed before the close is all there
    reopened = SqliteStore(path)
    stored = await reopened.open("unused")
    await reopened.close()
    assert len(stored.workers) == 2
    assert all(r.state.value == "COMPLETED" for r in stored.runs)
    # a later close waits for the first and reports the same failures
    with pytest.raises(RuntimeCloseError):
        await runtime.close()
