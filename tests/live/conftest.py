"""Fixtures of the live tests: the Runtime on a real model (llama.cpp + SmolLM2-135M) through the
gRPC API with the real client.

- ``llama``: ONE llama.cpp server for the whole session (starting it takes 1-3 s).
- ``live_config``: the shipped ``config/serve.toml`` with its ``local`` provider pointed at that
  server (so the ``smollm2`` / ``smollm2-chat`` profiles under test are the ones ``make serve``
  offers), plus a ``ramble`` profile for long, cancellable runs.
- ``serve``: a Runtime behind a real grpc.aio server on 127.0.0.1 port 0, and a RuntimeClient.

Without xllamacpp or the model the live tests skip locally and fail when ``CI`` is set.
"""

from __future__ import annotations

import asyncio
import os
import tomllib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from engine.testing import LlamaServer, llama_unavailable
from runtime_client import RuntimeClient
from runtime_server import Runtime
from runtime_server.grpc import RuntimeServer, start_server
from runtime_server.runtime import parse_config

ROOT = Path(__file__).resolve().parents[2]
SERVE_TOML = ROOT / "config" / "serve.toml"
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip locally; fail in CI, where everything must be installed."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: this is a failure, not a skip)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def llama() -> Iterator[LlamaServer]:
    reason = llama_unavailable()
    if reason is not None:
        missing(reason)
    with LlamaServer() as server:
        yield server


@pytest.fixture
def live_config(llama: LlamaServer) -> dict[str, Any]:
    data = tomllib.loads(SERVE_TOML.read_text(encoding="utf-8"))
    local = data["providers"]["local"]
    del local["local_model"]  # the session server instead of one started per Runtime
    local["base_url"] = llama.openai_base_url
    for profile in data["profiles"].values():
        if profile["provider"] == "local":
            profile.setdefault("model", llama.model_name)  # local_model gave the default
    data["profiles"]["ramble"] = {
        # Long answers ("Write a long story..." runs to the limit at temperature 0), to cancel
        # mid-stream; max_tokens beyond LOCAL_LLM's 64 on purpose: the cancel is what bounds it.
        "provider": "local",
        "model": llama.model_name,
        "max_tokens": 1024,
        "temperature": 0,
        "options": {"seed": 42},
        "max_tool_rounds": 1,
    }
    return data


@dataclass
class Served:
    runtime: Runtime
    server: RuntimeServer
    client: RuntimeClient


ServeFactory = Callable[[dict[str, Any]], Awaitable[Served]]


@pytest.fixture
async def serve() -> AsyncIterator[ServeFactory]:
    """``await serve(config_dict)`` → a running Runtime, gRPC server and client."""
    started: list[Served] = []

    async def factory(config: dict[str, Any]) -> Served:
        runtime = Runtime(config=parse_config(config, source="live test"))
        server = await start_server(runtime, "127.0.0.1:0")
        served = Served(runtime, server, RuntimeClient(f"127.0.0.1:{server.port}"))
        started.append(served)
        return served

    yield factory
    for served in reversed(started):
        await served.client.close()
        await served.server.stop(0)
    leftover = [t for t in asyncio.all_tasks() if t.get_name().startswith("run-") and not t.done()]
    assert not leftover, f"leaked run tasks: {leftover}"
