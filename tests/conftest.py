"""Fixtures every test directory can use (the helpers behind them live in ``tests/serving.py``):

- ``serve`` / ``served`` / ``client``: a real Runtime behind a real grpc.aio server on 127.0.0.1
  port 0, driven by the real RuntimeClient (no run task may outlive its test);
- ``serve_process``: real ``worker-runtime serve`` processes on temp data dirs;
- ``spawn_server``: ``serve --store memory`` processes with any flags (startup, signals, TLS);
- ``llama``: ONE llama.cpp server (SmolLM2-135M) for the whole session, shared by the engine's and
  the Runtime's live tests (skipped locally without the model, a failure under ``CI``).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
from serving import (
    BANNER,
    BASE_CONFIG,
    REPO_ROOT,
    SERVE_BANNER,
    START_TIMEOUT,
    Served,
    ServeFactory,
    ServeProcess,
    ServeProcessFactory,
    ServerProcess,
    SpawnServer,
    env,
    missing,
    serve_argv,
)

from engine.testing import LlamaServer, llama_unavailable
from runtime_client import RuntimeClient
from runtime_server import Runtime
from runtime_server.grpc import start_server
from runtime_server.model import Limits
from runtime_server.runtime import parse_config


@pytest.fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """``await serve(config=..., limits=..., auth_token=...)`` → a running server and client."""
    started: list[Served] = []

    async def factory(
        *,
        config: Mapping[str, Any] | None = None,
        limits: Limits | None = None,
        auth_token: str | None = None,
        client_token: str | None = None,
        **runtime_kwargs: Any,
    ) -> Served:
        cfg = parse_config(config if config is not None else BASE_CONFIG)
        runtime = Runtime(config=cfg, limits=limits, **runtime_kwargs)
        server = await start_server(runtime, "127.0.0.1:0", auth_token=auth_token)
        target = f"127.0.0.1:{server.port}"
        client = RuntimeClient(target, token=client_token if client_token else auth_token)
        served = Served(runtime, server, client, target)
        started.append(served)
        return served

    yield factory
    for served in reversed(started):
        for c in (served.client, *served.extra_clients):
            await c.close()
        await served.server.stop(0)
    # No run task may outlive its runtime.
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("run-") and not t.done()]
    assert not leftover, f"leaked run tasks: {leftover}"


@pytest.fixture
async def served(serve: ServeFactory) -> Served:
    return await serve()


@pytest.fixture
def client(served: Served) -> RuntimeClient:
    return served.client


@pytest.fixture
async def serve_process(tmp_path: Path) -> AsyncIterator[ServeProcessFactory]:
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


@pytest.fixture
async def spawn_server(tmp_path: Path) -> AsyncIterator[SpawnServer]:
    """``await spawn_server("--auth-token-env", "X", env={...})``: ``serve --listen
    127.0.0.1:0 --store memory`` plus the given arguments, once its banner names the port."""
    started: list[ServerProcess] = []

    async def factory(*args: str, env: Mapping[str, str] | None = None) -> ServerProcess:
        n = len(started)
        out, err = tmp_path / f"serve-{n}.out", tmp_path / f"serve-{n}.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "runtime_server.cli", "serve",
                "--listen", "127.0.0.1:0", "--store", "memory", *args,
                stdout=o, stderr=e, cwd=REPO_ROOT, env={**os.environ, **(env or {})},
            )  # fmt: skip
        server = ServerProcess(proc, out, err)
        started.append(server)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30.0
        while True:
            first = server.stdout().partition("\n")
            match = SERVE_BANNER.match(first[0]) if first[1] else None
            if match:
                server.target = f"{match[1]}:{match[2]}"
                return server
            if proc.returncode is not None or loop.time() > deadline:
                raise AssertionError(
                    f"serve did not start (rc {proc.returncode}):\n{server.stdout()}"
                    f"\n{server.stderr()}"
                )
            await asyncio.sleep(0.02)

    yield factory
    for server in started:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()


@pytest.fixture(scope="session")
def llama() -> Iterator[LlamaServer]:
    reason = llama_unavailable()
    if reason is not None:
        missing(reason)
    with LlamaServer() as server:
        yield server
