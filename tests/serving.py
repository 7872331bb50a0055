"""Helpers for tests that drive real ``worker-runtime serve`` processes on temp data dirs.

The ``serve_process`` fixture (conftest) starts ``python -m runtime_server.cli serve --listen
127.0.0.1:0`` as a subprocess, waits for its banner (``worker-runtime serving on HOST:PORT``) and
returns a :class:`ServeProcess` with the port; ``kill9()`` ends it the way a crash would. Every
process still alive at the end of the test is killed. ``run_serve(...)`` runs a ``serve`` that is
expected to fail at startup and returns its exit code and output.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime_client import Event, RuntimeClient

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
if not PYTHON.exists():  # e.g. a CI image with the package installed into the running interpreter
    PYTHON = Path(sys.executable)

BANNER = re.compile(r"worker-runtime serving on (?P<host>[^\s:]+):(?P<port>\d+)")
START_TIMEOUT = 30.0  # a safety net on a busy 2-core machine, not a speed assertion

# A slow echo: every word of the input comes back after ``delay_ms``, so runs stream for a while.
SLOW_CONFIG = """\
[profiles.slow]
provider = "builtin"
options = {{ delay_ms = {delay_ms} }}

[limits]
{limits}
"""


def write_config(path: Path, *, delay_ms: int = 10, **limits: int | float) -> Path:
    body = "\n".join(f"{k} = {v!r}" for k, v in limits.items())
    path.write_text(SLOW_CONFIG.format(delay_ms=delay_ms, limits=body), encoding="utf-8")
    return path


@dataclass
class ServeProcess:
    proc: subprocess.Popen[bytes]
    port: int
    banner: str
    stdout_path: Path
    stderr_path: Path
    clients: list[RuntimeClient] = field(default_factory=list)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self, **kwargs: Any) -> RuntimeClient:
        """A client of this process (closed by the fixture)."""
        c = RuntimeClient(self.target, **kwargs)
        self.clients.append(c)
        return c

    def kill9(self) -> None:
        """SIGKILL: no shutdown code runs, exactly like a crash."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=START_TIMEOUT)
        assert self.proc.returncode == -signal.SIGKILL

    def terminate(self, timeout: float = START_TIMEOUT) -> int:
        """SIGTERM: the graceful shutdown; returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")


def serve_argv(
    data_dir: Path | None,
    *,
    config: Path | None = None,
    store: str = "sqlite",
    durability: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    argv = [str(PYTHON), "-m", "runtime_server.cli", "serve", "--listen", "127.0.0.1:0"]
    argv += ["--store", store]
    if data_dir is not None:
        argv += ["--data-dir", str(data_dir)]
    if config is not None:
        argv += ["--config", str(config)]
    if durability is not None:
        argv += ["--durability", durability]
    argv += ["--log-level", "WARNING", *extra]
    return argv


def env() -> dict[str, str]:
    env = dict(os.environ)
    # The source tree must win over anything installed elsewhere, whatever the working directory.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    return env


ServeFactory = Callable[..., Awaitable[ServeProcess]]


@dataclass(frozen=True)
class Finished:
    returncode: int
    stdout: str
    stderr: str


def run_serve(argv: list[str], *, cwd: Path | None = None, timeout: float = 60.0) -> Finished:
    """Run a ``serve`` that should exit by itself (a startup failure)."""
    proc = subprocess.run(
        argv, cwd=cwd or REPO_ROOT, env=env(), capture_output=True, timeout=timeout, check=False
    )
    return Finished(
        proc.returncode,
        proc.stdout.decode(errors="replace"),
        proc.stderr.decode(errors="replace"),
    )


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool],
    *,
    within: float = 20.0,
    interval: float = 0.02,
    what: str = "condition",
) -> None:
    """Wait until ``check()`` is true (instead of sleeping a fixed time)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(interval)


async def all_events(client: RuntimeClient, after_seq: int = 0) -> list[Event]:
    """The whole retained log from ``after_seq``, through ListEvents pages."""
    out: list[Event] = []
    cursor = after_seq
    while True:
        page = await client.list_events(after_seq=cursor)
        out.extend(page.events)
        if not page.events or page.events[-1].seq >= page.last_seq:
            return out
        cursor = page.events[-1].seq


def files_of(directory: Path) -> Iterator[tuple[str, bytes]]:
    for p in sorted(directory.iterdir()):
        if p.is_file():
            yield p.name, p.read_bytes()
