"""Helpers for tests that drive a real ``worker-backend serve`` subprocess (tests/backend,
tests/browser): a remote ``worker-runtime serve`` subprocess (the ``serve_process`` fixture) with
a bearer token and a slow echo, the Backend configured with it, and an httpx client of the
Backend's HTTP API. ``console`` (fixture) starts both and returns a :class:`Console`.
"""

from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from serving import (
    PYTHON,
    REPO_ROOT,
    START_TIMEOUT,
    ServeProcess,
    ServeProcessFactory,
    env,
    unassigned_port,
)

BACKEND_BANNER = re.compile(r"worker-backend serving on http://127\.0\.0\.1:(?P<port>\d+)")
REMOTE_TOKEN = "remote-tok-7d1e0c9a5b3f4e21"
CSRF = {"x-worker-console": "1"}

# The remote runtime: a slow echo (a run streams word by word for a few seconds), a very slow
# one, and, when a test passes ``provider_url``, a scripted OpenAI-style provider on loopback.
REMOTE_CONFIG = """\
[profiles.slow]
provider = "builtin"
options = {{ delay_ms = {delay_ms} }}

[profiles.very-slow]
provider = "builtin"
options = {{ delay_ms = 400 }}
{provider}
[limits]
event_retention_events = {retention}
"""
SCRIPTED = """
[providers.scripted]
kind = "openai_chat"
base_url = "{url}/v1"
max_retries = 0

[profiles.scripted]
provider = "scripted"
model = "scripted"
"""

EMBEDDED_CONFIG = """\
[profiles.echo-slow]
provider = "builtin"
options = { delay_ms = 100 }
"""


@dataclass
class BackendProcess:
    proc: subprocess.Popen[bytes]
    port: int
    stderr_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def terminate(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=START_TIMEOUT)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


@dataclass
class Console:
    """A Backend subprocess over its embedded runtime (SQLite) and one remote runtime."""

    backend: BackendProcess
    remote: ServeProcess
    remote_data: Path
    http: httpx.AsyncClient
    restart_remote: Callable[[], Awaitable[ServeProcess]]
    bodies: list[str] = field(default_factory=list)  # every API response body seen by `call`

    async def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {**CSRF, **kwargs.pop("headers", {})}
        resp = await self.http.request(method, path, headers=headers, **kwargs)
        self.bodies.append(resp.text)
        return resp

    async def runtime_ids(self) -> tuple[str, str]:
        """(embedded runtime_id, remote runtime_id), once the remote one is READY."""
        found: dict[str, str] = {}

        async def ready() -> bool:
            runtimes = (await self.call("GET", "/api/runtimes")).json()["runtimes"]
            for r in runtimes:
                if r["state"] == "READY" and r["runtime_id"]:
                    found[r["kind"]] = r["runtime_id"]
            return len(found) == 2

        await eventually(ready, timeout=START_TIMEOUT)
        return found["embedded"], found["remote"]

    async def create_worker(self, runtime_id: str, profile: str, name: str = "") -> str:
        resp = await self.call(
            "POST",
            "/api/workers",
            json={"runtime_id": runtime_id, "profile": profile, "display_name": name},
        )
        assert resp.status_code == 201, resp.text
        worker_id: str = resp.json()["worker"]["worker_id"]
        return worker_id

    async def send(self, runtime_id: str, worker_id: str, text: str, **extra: Any) -> Any:
        path = f"/api/runtimes/{runtime_id}/workers/{worker_id}/input"
        resp = await self.call("POST", path, json={"text": text, **extra})
        assert resp.status_code == 202, resp.text
        return resp.json()["run"]


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - a polling helper
    interval: float = 0.05,
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def start_backend(
    tmp_path: Path,
    config_text: str,
    extra_env: dict[str, str] | None = None,
    extra_args: list[str] | None = None,
) -> BackendProcess:
    config = tmp_path / "backend.toml"
    config.write_text(config_text, encoding="utf-8")
    err_path, out_path = tmp_path / "backend.err", tmp_path / "backend.out"
    argv = [str(PYTHON), "-m", "backend.cli", "serve", "--config", str(config)]
    argv += ["--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "backend-data")]
    argv += extra_args or []
    with out_path.open("wb") as out, err_path.open("wb") as err:
        proc = subprocess.Popen(  # noqa: ASYNC220 - only forks; the banner wait below polls
            argv, stdout=out, stderr=err, cwd=REPO_ROOT, env={**env(), **(extra_env or {})}
        )
    deadline = time.monotonic() + START_TIMEOUT * 2
    while True:
        match = BACKEND_BANNER.search(out_path.read_text(errors="replace"))
        if match:
            return BackendProcess(proc, int(match["port"]), err_path)
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"backend did not start:\n{err_path.read_text(errors='replace')}")
        await asyncio.sleep(0.05)


def backend_config(
    remote_port: int,
    *,
    heartbeat_s: float = 1.0,
    token: bool = False,
    bundles_dir: Path | None = None,
    allowed_hosts: tuple[str, ...] = (),
    trusted_proxies: tuple[str, ...] = (),
) -> str:
    return (
        f'runtime_config = "embedded.toml"\nheartbeat_s = {heartbeat_s}\nmax_input_chars = 2000\n'
        + (f"trusted_proxies = {list(trusted_proxies)!r}\n" if trusted_proxies else "")
        + ('token_env = "TEST_CONSOLE_TOKEN"\n' if token else "")
        + (f'bundles_dir = "{bundles_dir}"\n' if bundles_dir is not None else "")
        + (f"allowed_hosts = {list(allowed_hosts)!r}\n" if allowed_hosts else "")
        + f'[companion]\nprofile = "echo"\n\n'
        f'[[runtimes]]\ntarget = "127.0.0.1:{remote_port}"\nalias = "remote"\n'
        f'token_env = "TEST_REMOTE_TOKEN"\n'
    )


ConsoleFactory = Callable[..., Awaitable[Console]]


@pytest.fixture
async def console(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> AsyncIterator[ConsoleFactory]:
    """``await console(delay_ms=..., provider_url=..., retention=...)`` → a running Console."""
    made: list[Console] = []

    async def factory(
        *,
        delay_ms: int = 150,
        provider_url: str = "",
        retention: int = 100_000,
        token: str = "",
        bundles_dir: Path | None = None,
        remote_extra: tuple[str, ...] = (),
        allowed_hosts: tuple[str, ...] = (),
        trusted_proxies: tuple[str, ...] = (),
    ) -> Console:
        token_file = tmp_path / "remote.token"
        token_file.write_text(REMOTE_TOKEN, encoding="utf-8")
        token_file.chmod(0o600)  # serve refuses a token file every user may read
        remote_cfg = tmp_path / "remote.toml"
        provider = SCRIPTED.format(url=provider_url) if provider_url else ""
        remote_cfg.write_text(
            REMOTE_CONFIG.format(delay_ms=delay_ms, provider=provider, retention=retention),
            encoding="utf-8",
        )
        remote_data = tmp_path / "remote-data"
        auth = ("--auth-token-file", str(token_file), *remote_extra)
        # restart_remote() brings it back on the same port: one the kernel never hands out itself
        listen = ("--listen", f"127.0.0.1:{unassigned_port()}")
        remote = await serve_process(remote_data, config=remote_cfg, extra=(*auth, *listen))

        async def restart_remote() -> ServeProcess:
            return await serve_process(remote_data, config=remote_cfg, extra=(*auth, *listen))

        (tmp_path / "embedded.toml").write_text(EMBEDDED_CONFIG, encoding="utf-8")
        backend = await start_backend(
            tmp_path,
            backend_config(
                remote.port,
                token=bool(token),
                bundles_dir=bundles_dir,
                allowed_hosts=allowed_hosts,
                trusted_proxies=trusted_proxies,
            ),
            {"TEST_REMOTE_TOKEN": REMOTE_TOKEN, "TEST_CONSOLE_TOKEN": token},
        )
        http = httpx.AsyncClient(base_url=backend.url, timeout=30)
        c = Console(backend, remote, remote_data, http, restart_remote)
        made.append(c)
        return c

    yield factory
    for c in made:
        await c.http.aclose()
        if c.backend.proc.poll() is None:
            c.backend.proc.kill()
        await asyncio.to_thread(c.backend.proc.wait, START_TIMEOUT)
