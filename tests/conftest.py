"""Fixtures every test directory can use: real ``worker-runtime serve`` processes on temp data
dirs (``serve_process``); the helpers behind them live in ``tests/serving.py``."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest
from serving import (
    BANNER,
    REPO_ROOT,
    START_TIMEOUT,
    ServeFactory,
    ServeProcess,
    env,
    serve_argv,
)


@pytest.fixture
async def serve_process(tmp_path: Path) -> AsyncIterator[ServeFactory]:
    """``await serve_process(data_dir, config=..., durability=..., cwd=...)`` → serving."""
    started: list[ServeProcess] = []
    counter = iter(range(1_000_000))

    async def factory(
        data_dir: Path | None,
        *,
        config: Path | None = None,
        store: str = "sqlite",
        durability: str | None = None,
        cwd: Path | None = None,
        extra: Sequence[str] = (),
    ) -> ServeProcess:
        n = next(counter)
        out_path, err_path = tmp_path / f"serve{n}.out", tmp_path / f"serve{n}.err"
        argv = serve_argv(data_dir, config=config, store=store, durability=durability, extra=extra)
        with out_path.open("wb") as out, err_path.open("wb") as err:
            # Popen only forks and execs; the wait for the banner below polls without blocking.
            proc = subprocess.Popen(  # noqa: ASYNC220
                argv, stdout=out, stderr=err, cwd=cwd or REPO_ROOT, env=env()
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            text = out_path.read_text(errors="replace")
            match = BANNER.search(text)
            # the banner is printed in one write; wait for its last line too
            if match and "auth" in text:
                sp = ServeProcess(proc, int(match["port"]), text, out_path, err_path)
                started.append(sp)
                return sp
            if proc.poll() is not None:
                raise AssertionError(
                    f"serve exited with {proc.returncode} before serving:\n{text}\n"
                    f"{err_path.read_text(errors='replace')}"
                )
            if time.monotonic() > deadline:
                proc.kill()
                await asyncio.to_thread(proc.wait)
                raise AssertionError(f"serve did not print its banner in {START_TIMEOUT}s")
            await asyncio.sleep(0.02)

    yield factory
    for sp in reversed(started):
        for c in sp.clients:
            await c.close()
        if sp.proc.poll() is None:
            sp.proc.kill()
        await asyncio.to_thread(sp.proc.wait, START_TIMEOUT)
