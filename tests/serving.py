"""The shared helpers of the test suite, in one place (fixtures over them are in conftest.py).

- Served runtimes: :class:`Served` (a Runtime behind a real grpc.aio server on 127.0.0.1 port 0,
  with the real client: fixtures ``serve``, ``served``, ``client``); :class:`ServeProcess` (a real
  ``worker-runtime serve`` subprocess on a temp data dir, fixture ``serve_process``; ``kill9()``
  ends it the way a crash would); :class:`ServerProcess` (a ``serve --store memory`` subprocess
  with any flags, fixture ``spawn_server``); :func:`run_serve` for a ``serve`` expected to fail at
  startup. Every process still alive at the end of its test is killed.
- Waiting and reading: :func:`eventually` (poll instead of sleeping), :func:`all_events`,
  :func:`assert_gap_free`, :func:`error_info` (the ErrorInfo of a raw gRPC error, read without
  the client's help), :func:`sse` (a provider's SSE body from JSON payloads).
- :func:`missing`: a skip locally, a failure under ``CI`` (fixtures, the local model).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2

from runtime_client import Event, RuntimeClient
from runtime_server import Runtime
from runtime_server.grpc import RuntimeServer

REPO_ROOT = Path(__file__).resolve().parents[1]
PYTHON = REPO_ROOT / ".venv" / "bin" / "python"
if not PYTHON.exists():  # e.g. a CI image with the package installed into the running interpreter
    PYTHON = Path(sys.executable)

IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip locally; fail in CI, where everything must be installed and present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: this is a failure, not a skip)")
    pytest.skip(reason)


# --- a Runtime behind a real grpc.aio server, in this process ------------------------------------

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


# ``await serve(config=..., limits=..., auth_token=...)`` (the ``serve`` fixture)
ServeFactory = Callable[..., Awaitable[Served]]


# --- `worker-runtime serve` in a subprocess ------------------------------------------------------

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


def unassigned_port() -> int:
    """A free loopback port BELOW the kernel's ephemeral range: for a server that must come back on
    the same port after a restart (``--listen 127.0.0.1:PORT`` on both starts), and for a port
    nothing may listen on.

    A port-0 port is an ephemeral one: once released (the first server's exit, a probe socket's
    close), the kernel may hand it to any ``bind(0)`` or ``connect()`` on the machine (this box
    runs several test suites at once), or to the test's own client reconnecting to it (a TCP
    self-connect): the restart fails, or the "closed" port answers. The kernel never hands out a
    port below the range by itself, so only an explicit bind could take it: a random one, checked
    free, is as good as reserved."""
    low = 32768
    with contextlib.suppress(OSError, ValueError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise AssertionError(f"no free port below {low}")


# ``await serve_process(data_dir, config=..., durability=...)`` (the ``serve_process`` fixture)
ServeProcessFactory = Callable[..., Awaitable[ServeProcess]]

SERVE_BANNER = re.compile(r"^worker-runtime serving on (\S+):(\d+)$")


@dataclass
class ServerProcess:
    """A ``serve --store memory`` child started with asyncio (fixture ``spawn_server``, for flag
    and signal tests); stdout/stderr go to files (a pipe nobody reads could fill up and stall the
    server)."""

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


# ``await spawn_server("--auth-token-env", "X", env={...})`` (the ``spawn_server`` fixture)
SpawnServer = Callable[..., Awaitable[ServerProcess]]


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


# --- waiting and reading -------------------------------------------------------------------------


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


def assert_gap_free(seqs: list[int]) -> None:
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs


def error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    """The ErrorInfo in the grpc-status-details-bin trailer (a google.rpc.Status whose code is the
    call's), read without the client's help."""
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            status = status_pb2.Status.FromString(value)
            assert status.code == exc.code().value[0]
            for detail in status.details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError(f"no ErrorInfo in {exc!r}")


def sse(*payloads: Any) -> bytes:
    """An SSE body of ``data:`` events, one per payload (JSON-encoded unless already a string)."""
    return b"".join(
        f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode() for p in payloads
    )


def assert_one_line_usage_error(done: Finished, *needles: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert "serving on" not in done.stdout
    for needle in needles:
        assert needle in err, err
