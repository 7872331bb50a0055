"""Fixtures for the gRPC API tests: a real Runtime behind a real grpc.aio server on 127.0.0.1
port 0, driven by the real RuntimeClient."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from runtime_client import RuntimeClient
from runtime_server import Runtime
from runtime_server.grpc import RuntimeServer, start_server
from runtime_server.model import Limits
from runtime_server.runtime import parse_config

# Profiles every API test can use: the built-in echo plus a slow echo for long, cancellable runs.
BASE_CONFIG: dict[str, Any] = {
    "profiles": {
        "slow": {"provider": "builtin", "options": {"delay_ms": 20}},
        "very-slow": {"provider": "builtin", "options": {"delay_ms": 500}},
    }
}


@dataclass
class Served:
    runtime: Runtime
    server: RuntimeServer
    client: RuntimeClient
    target: str
    extra_clients: list[RuntimeClient] = field(default_factory=list)

    async def new_client(self, **kwargs: Any) -> RuntimeClient:
        client = RuntimeClient(self.target, **kwargs)
        self.extra_clients.append(client)
        return client


ServeFactory = Callable[..., Awaitable[Served]]


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


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper, not a cancellable wait
    interval: float = 0.01,
) -> None:
    """Wait until ``check()`` is true (instead of sleeping a fixed time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


@pytest.fixture
def until() -> Callable[..., Awaitable[None]]:
    """:func:`eventually` as a fixture: a bare ``from conftest import`` picks up whichever
    conftest.py pytest loaded last (e.g. ``pytest tests/api tests/engine`` breaks it)."""
    return eventually


# --- `worker-runtime serve` in a subprocess -----------------------------------------------------

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVE_BANNER = re.compile(r"^worker-runtime serving on (\S+):(\d+)$")


@dataclass
class ServerProcess:
    """A ``python -m runtime_server.cli serve`` child; stdout/stderr go to files (a pipe nobody
    reads could fill up and stall the server)."""

    proc: asyncio.subprocess.Process
    stdout_path: Path
    stderr_path: Path
    target: str = ""

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    async def terminate(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 - a safety bound
        """SIGTERM, then wait for the exit code (killing it if it overruns ``timeout``)."""
        if self.proc.returncode is None:
            # os.kill, not send_signal: Popen.send_signal polls first and may reap an exiting
            # child behind asyncio's child watcher, which then reports returncode 255
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            raise AssertionError(f"server did not exit within {timeout}s after SIGTERM") from None


SpawnServer = Callable[..., Awaitable[ServerProcess]]


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
