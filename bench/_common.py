"""Shared pieces of ``python -m bench``: result rows, medians, server subprocesses, RSS."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import re
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from runtime_server.event_loop import DEFAULT_EVENT_LOOP, loop_factory

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

Direction = Literal["min", "max"]  # the product figure (or ratio) must be >= / <= the target


@dataclass
class Row:
    """One line of the final table.

    ``kind`` says what the target is about: ``"ratio"`` (product / baseline, e.g. >= 0.35x) or
    ``"abs"`` (the product figure itself, e.g. >= 20,000 events/s). ``direction`` says whether the
    target is a floor (``"min"``) or a ceiling (``"max"``).

    ``shape`` (optional) holds the shape baseline's figures (``bench.shape``: the product's exact
    RPC shape with no logic), measured in the same slices: ``limit`` is shape / baseline (what a
    runtime with no cost of its own would reach against the target), ``of_limit`` product / shape
    (how close the product is to that limit).
    """

    section: str
    name: str
    unit: str
    baseline: list[float] = field(default_factory=list)
    product: list[float] = field(default_factory=list)
    kind: Literal["ratio", "abs", "info"] = "ratio"
    target: float | None = None
    direction: Direction = "min"
    note: str = ""
    shape: list[float] = field(default_factory=list)

    @property
    def baseline_median(self) -> float | None:
        return statistics.median(self.baseline) if self.baseline else None

    @property
    def product_median(self) -> float | None:
        return statistics.median(self.product) if self.product else None

    @property
    def ratio(self) -> float | None:
        """Median of the per-repetition ratios (pairs measured back to back), if paired."""
        if not self.baseline or not self.product:
            return None
        if len(self.baseline) == len(self.product):
            pairs = [p / b for b, p in zip(self.baseline, self.product, strict=True) if b]
            return statistics.median(pairs) if pairs else None
        b, p = self.baseline_median, self.product_median
        return p / b if b and p is not None else None

    @property
    def limit(self) -> float | None:
        """Median of the per-repetition shape / baseline ratios."""
        return _paired(self.baseline, self.shape)

    @property
    def of_limit(self) -> float | None:
        """Median of the per-repetition product / shape ratios."""
        return _paired(self.shape, self.product)

    @property
    def achieved(self) -> float | None:
        if self.kind == "ratio":
            return self.ratio
        if self.kind == "abs":
            return self.product_median
        return None

    @property
    def verdict(self) -> str:
        got, target = self.achieved, self.target
        if got is None or target is None:
            return "-"
        ok = got >= target if self.direction == "min" else got <= target
        return "PASS" if ok else "MISS"

    def target_text(self) -> str:
        if self.target is None:
            return "-"
        op = ">=" if self.direction == "min" else "<="
        if self.kind == "ratio":
            return f"{op} {self.target:g}x"
        return f"{op} {fmt(self.target)} {self.unit}"

    def as_json(self) -> dict[str, object]:
        return {
            "section": self.section,
            "name": self.name,
            "unit": self.unit,
            "baseline": {"median": self.baseline_median, "runs": self.baseline},
            "product": {"median": self.product_median, "runs": self.product},
            "ratio": self.ratio,
            "kind": self.kind,
            "target": self.target,
            "direction": self.direction,
            "verdict": self.verdict,
            "note": self.note,
            "shape": {"median": statistics.median(self.shape) if self.shape else None,
                      "runs": self.shape},
            "limit": self.limit,
            "of_limit": self.of_limit,
        }  # fmt: skip


def _paired(below: list[float], above: list[float]) -> float | None:
    if not below or len(below) != len(above):
        return None
    pairs = [a / b for b, a in zip(below, above, strict=True) if b]
    return statistics.median(pairs) if pairs else None


def fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:,.1f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def say(text: str) -> None:
    print(text, flush=True)


def show(row: Row, rep: int | None = None) -> None:
    """Print the figures of a row so far (one line per repetition while measuring)."""
    head = f"  [{row.section}] {row.name}"
    if rep is not None:
        head += f" (rep {rep})"
    parts = []
    if row.baseline:
        parts.append(f"baseline {fmt(row.baseline[-1] if rep else row.baseline_median)}")
    if row.product:
        parts.append(f"product {fmt(row.product[-1] if rep else row.product_median)}")
    if row.shape:
        parts.append(f"shape {fmt(row.shape[-1] if rep else statistics.median(row.shape))}")
    say(f"{head}: {', '.join(parts)} {row.unit}")


def _x(value: float | None) -> str:
    return f"{value:.3f}x" if value is not None else "-"


def table(rows: Sequence[Row]) -> str:
    """The final table; with the shape baseline's columns when a row has them: ``shape`` (its
    figure), ``limit`` (shape / baseline) and ``of limit`` (product / shape)."""
    header: tuple[str, ...] = ("section", "metric", "unit", "baseline", "product", "ratio",
                               "target", "result")  # fmt: skip
    shaped = any(r.shape for r in rows)
    if shaped:
        header += ("shape", "limit", "of limit")
    lines = [header]
    for r in rows:
        line: tuple[str, ...] = (
            r.section, r.name, r.unit, fmt(r.baseline_median), fmt(r.product_median), _x(r.ratio),
            r.target_text(), r.verdict,
        )  # fmt: skip
        if shaped:
            shape = statistics.median(r.shape) if r.shape else None
            line += (fmt(shape), _x(r.limit), _x(r.of_limit))
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = []
    for n, line in enumerate(lines):
        out.append(
            "  ".join(
                cell.ljust(w) if i < 3 else cell.rjust(w)
                for i, (cell, w) in enumerate(zip(line, widths, strict=True))
            )
        )
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def before_slice() -> None:
    """Called before each timed slice of an alternation: a full garbage collection, untimed.

    The bench process keeps what earlier sections loaded (the ``engine`` section imports the
    official SDKs: hundreds of thousands of objects), and a full collection walks all of it: a
    100-300 ms pause that lands in whichever side's slice happens to trigger it, charging one
    side for the whole process's heap. In one full run that made "direct + request_id" read
    957 runs/s against 1,473/s through the registry, which sends a request_id too. Collecting
    between slices resets the collector's count of new long-lived objects, so a slice (a few
    thousand of them) never triggers a full collection; the young collections each side's
    allocations cause still land in its own slices."""
    gc.collect()


async def timed(work: Callable[[], Awaitable[int]]) -> float:
    """Run ``work`` (which returns a count of operations) and return operations per second."""
    start = time.perf_counter()
    count = await work()
    return count / (time.perf_counter() - start)


# --- server subprocesses ------------------------------------------------------------------------


@dataclass
class ServerProcess:
    proc: subprocess.Popen[str]
    port: int
    started: float  # perf_counter() before Popen
    ready: float  # perf_counter() when the port line was read

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


_PORT_LINE = re.compile(r"(?:serving on \S+:|^PORT )(\d+)")


async def start_server(argv: Sequence[str], *, timeout_s: float = 60.0) -> ServerProcess:
    """Start ``python argv...`` in the repo and wait for the line announcing its port."""
    started = time.perf_counter()
    proc = await asyncio.to_thread(
        subprocess.Popen,
        [sys.executable, *argv],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        bufsize=1,
    )
    assert proc.stdout is not None
    stdout = proc.stdout

    def read_port() -> int:
        for line in stdout:
            match = _PORT_LINE.search(line)
            if match:
                return int(match.group(1))
        raise RuntimeError(f"server {argv!r} exited (rc={proc.wait()}) before announcing a port")

    try:
        port = await asyncio.wait_for(asyncio.to_thread(read_port), timeout_s)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    # keep draining stdout so the server never blocks on a full pipe
    asyncio.get_running_loop().run_in_executor(None, _drain, stdout)
    return ServerProcess(proc, port, started, time.perf_counter())


def _drain(stream: Iterable[str]) -> None:
    with contextlib.suppress(Exception):
        for _ in stream:
            pass


async def stop_server(server: ServerProcess, timeout_s: float = 15.0) -> None:
    if server.proc.poll() is None:
        server.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.to_thread(server.proc.wait), timeout_s)
        except TimeoutError:
            server.proc.kill()
            await asyncio.to_thread(server.proc.wait)


@contextlib.asynccontextmanager
async def running(argv: Sequence[str]) -> AsyncIterator[ServerProcess]:
    server = await start_server(argv)
    try:
        yield server
    finally:
        await stop_server(server)


def runtime_argv(*extra: str) -> list[str]:
    """``worker-runtime serve`` on a free port (add ``--store``/``--data-dir`` as needed).
    ``BENCH_SERVE_ARGS`` (split like a shell) is appended: e.g. ``--access-log off`` or
    ``--metrics-listen 127.0.0.1:0`` to measure what the operator's options cost."""
    more = shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))
    return ["-m", "runtime_server.cli", "serve", "--listen", "127.0.0.1:0", "--grace", "0",
            "--log-level", "WARNING", *extra, *more]  # fmt: skip


def serve_event_loop() -> str:
    """The event loop the bench's ``serve`` processes run on: serve's default, or the
    ``--event-loop`` given in ``BENCH_SERVE_ARGS``."""
    loop = DEFAULT_EVENT_LOOP
    more = shlex.split(os.environ.get("BENCH_SERVE_ARGS", ""))
    for i, arg in enumerate(more):
        if arg == "--event-loop" and i + 1 < len(more):
            loop = more[i + 1]
        elif arg.startswith("--event-loop="):
            loop = arg.split("=", 1)[1]
    return loop


def run_on_serve_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a baseline server (``bench._bare``, ``bench.shape``) on the event loop ``serve`` runs
    on in this bench (:func:`serve_event_loop`), so that a ratio compares like with like: the
    loop's own cost per message is part of both sides. (They inherit ``BENCH_SERVE_ARGS``.)"""
    with asyncio.Runner(loop_factory=loop_factory(serve_event_loop())) as runner:
        runner.run(main)


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def cpu_count() -> int:
    return os.cpu_count() or 1
