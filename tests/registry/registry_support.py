"""Helpers and fixtures (re-exported by conftest.py) for the RuntimeRegistry tests: real
``worker-runtime serve`` subprocesses on SQLite (``serve_process`` from tests/conftest.py),
registries over them with short probe timings (generous against this shared machine, never
asserted as speed), and a blackhole listener."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from serving import ServeProcess, ServeProcessFactory, eventually, unassigned_port, write_config

from runtime_client import (
    RegistryOptions,
    RuntimeHealth,
    RuntimeRegistry,
    RuntimeStatus,
)

# Fast probes so state changes show within the acceptance bounds; the backoff stays jittered.
FAST = RegistryOptions(
    probe_timeout_s=1.0,
    call_timeout_s=5.0,
    refresh_interval_s=0.5,
    backoff_initial_s=0.05,
    backoff_max_s=0.5,
    retry_budget_s=30.0,
)


@dataclass
class Remote:
    """One serve subprocess: its data dir and config, so it can be restarted on the same port."""

    serve: ServeProcessFactory
    data_dir: Path
    config: Path
    proc: ServeProcess
    extra: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        return self.proc.target

    async def restart(self, *, data_dir: Path | None = None) -> None:
        """Start again on the same port (and the same data dir unless told otherwise)."""
        if self.proc.proc.poll() is None:
            self.proc.kill9()
        if data_dir is not None:
            self.data_dir = data_dir
        listen = ["--listen", self.proc.target]
        self.proc = await _start_on_port(self, listen)


async def _start_on_port(remote: Remote, listen: list[str]) -> ServeProcess:
    # the port was just released by a killed process: binding may need a moment
    last: AssertionError | None = None
    for _ in range(50):
        try:
            return await remote.serve(
                remote.data_dir, config=remote.config, extra=[*listen, *remote.extra]
            )
        except AssertionError as exc:  # "exited before serving": the port is not free yet
            last = exc
            await asyncio.sleep(0.1)
    assert last is not None
    raise last


RemoteFactory = Callable[..., Awaitable[Remote]]


@pytest.fixture
async def remote(serve_process: ServeProcessFactory, tmp_path: Path) -> RemoteFactory:
    """``await remote(name, delay_ms=..., extra=[...])`` → a serve subprocess on SQLite."""

    async def factory(name: str, *, delay_ms: int = 20, extra: list[str] | None = None) -> Remote:
        data = tmp_path / name
        data.mkdir()
        config = write_config(tmp_path / f"{name}.toml", delay_ms=delay_ms)
        # restart() brings it back on the same port: one the kernel never hands out by itself
        listen = ["--listen", f"127.0.0.1:{unassigned_port()}"]
        proc = await serve_process(data, config=config, extra=[*listen, *(extra or [])])
        return Remote(serve_process, data, config, proc, list(extra or []))

    return factory


RegistryFactory = Callable[..., Awaitable[RuntimeRegistry]]


@pytest.fixture
async def registry_factory() -> AsyncIterator[RegistryFactory]:
    """``await registry_factory(options)`` → a registry, closed at the end; add runtimes to it
    before ``start()``."""
    made: list[RuntimeRegistry] = []

    async def factory(options: RegistryOptions = FAST) -> RuntimeRegistry:
        reg = RuntimeRegistry(options)
        made.append(reg)
        return reg

    yield factory
    for reg in made:
        await reg.close()


def status_of(registry: RuntimeRegistry, alias: str) -> RuntimeStatus:
    return next(s for s in registry.runtimes() if s.alias == alias)


async def wait_state(
    registry: RuntimeRegistry, alias: str, state: RuntimeHealth, *, within: float = 30.0
) -> RuntimeStatus:
    await eventually(
        lambda: status_of(registry, alias).state is state,
        within=within,
        what=f"{alias} {state.value} (is {status_of(registry, alias).state.value})",
    )
    return status_of(registry, alias)


@contextlib.asynccontextmanager
async def blackhole() -> AsyncIterator[str]:
    """A loopback listener that accepts connections and never answers (a hung peer)."""
    held: list[asyncio.StreamWriter] = []

    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)  # keep it open, read nothing, write nothing

    server = await asyncio.start_server(swallow, "127.0.0.1", 0, family=socket.AF_INET)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        for w in held:
            w.close()
        server.close()
        with contextlib.suppress(Exception):
            await server.wait_closed()


def first(items: Any) -> Any:
    return next(iter(items))
