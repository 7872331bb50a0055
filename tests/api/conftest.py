"""Fixtures for the gRPC API tests: a real Runtime behind a real grpc.aio server on 127.0.0.1
port 0, driven by the real RuntimeClient."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
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
