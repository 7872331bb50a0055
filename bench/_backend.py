"""Section ``backend`` (issue 12): what the Backend's SSE costs, and what open streams hold.

* SSE throughput: a remote ``serve --store memory`` holds one worker whose runs produced
  ``events`` events (an echo of a long text: mostly TextDeltas). Replaying them from seq 0 is
  timed twice per repetition, back to back: ``RuntimeClient.subscribe`` directly (baseline) and
  a browser-free SSE client reading ``GET /api/runtimes/{rt}/workers/{w}/events?after_seq=0``
  from a ``worker-backend serve`` subprocess routed to that runtime (product), counting ``id:``
  lines. Target: the Backend's rate >= 0.5x the direct one. The note gives each side's CPU per
  event, which the machine's load does not move as it moves the rates.
* RSS with 256 open console streams: the Backend process's resident set before and after 256
  SSE connections are open and have received their first bytes (informative).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bench._common import Row, rss_bytes, running, runtime_argv, say, show
from bench._peer import cpu_ns
from runtime_client import RuntimeClient

SECTION = "backend"
TARGET = 0.5
STREAMS = 256

REMOTE_CONFIG = """\
[profiles.fast]
provider = "builtin"
options = { delay_ms = 0 }
"""


def backend_config(target: str) -> str:
    return (
        'store = "memory"\nmax_streams = 1000\nmax_streams_per_client = 1000\nheartbeat_s = 15\n'
        '[companion]\nprofile = "echo"\n'
        f'[[runtimes]]\ntarget = "{target}"\nalias = "bench"\n'
    )


async def _direct(client: RuntimeClient, worker_id: str, events: int) -> float:
    start = time.perf_counter()
    seen = 0
    stream = client.subscribe(worker_id, after_seq=0)
    async with contextlib.aclosing(stream):
        async for _ in stream:
            seen += 1
            if seen >= events:
                break
    return seen / (time.perf_counter() - start)


async def _through_backend(http: httpx.AsyncClient, path: str, events: int) -> float:
    start = time.perf_counter()
    seen = 0
    tail = b""
    async with http.stream("GET", path) as resp:
        async for chunk in resp.aiter_bytes():
            data = tail + chunk
            seen += data.count(b"\nid: ") + data.startswith(b"id: ")
            tail = data[-5:]
            if seen >= events:
                break
    return seen / (time.perf_counter() - start)


async def _ready_runtime(http: httpx.AsyncClient) -> str:
    for _ in range(600):
        runtimes = (await http.get("/api/runtimes")).json()["runtimes"]
        for r in runtimes:
            if r["kind"] == "remote" and r["state"] == "READY":
                return str(r["runtime_id"])
        await asyncio.sleep(0.1)
    raise RuntimeError("the remote runtime never became READY through the Backend")


async def run(quick: bool) -> list[Row]:
    reps = 3
    words = 2_000 if quick else 6_000
    rate = Row(SECTION, "SSE replay via Backend vs direct subscribe", "events/s", target=TARGET)
    rss = Row(SECTION, f"Backend RSS with {STREAMS} open streams", "MiB", kind="info")
    with tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        remote_cfg = Path(tmp) / "remote.toml"
        remote_cfg.write_text(REMOTE_CONFIG)
        async with running(runtime_argv("--store", "memory", "--config", str(remote_cfg))) as rt:
            backend_cfg = Path(tmp) / "backend.toml"
            backend_cfg.write_text(backend_config(rt.target))
            argv = ["-m", "backend.cli", "serve", "--config", str(backend_cfg)]
            argv += ["--listen", "127.0.0.1:0", "--data-dir", str(Path(tmp) / "data")]
            async with running(argv) as be:
                headers = {"x-worker-console": "1"}
                limits = httpx.Limits(max_connections=STREAMS + 8)
                async with (
                    RuntimeClient(rt.target) as client,
                    httpx.AsyncClient(
                        base_url=f"http://127.0.0.1:{be.port}",
                        headers=headers,
                        timeout=120,
                        limits=limits,
                    ) as http,
                ):
                    rid = await _ready_runtime(http)
                    created = await http.post(
                        "/api/workers", json={"runtime_id": rid, "profile": "fast"}
                    )
                    wid = created.json()["worker"]["worker_id"]
                    text = " ".join(f"w{i}" for i in range(words))
                    accepted = await client.send_input(wid, text)
                    await client.wait_run(accepted.run.run_id, timeout=300)
                    events, cursor = 0, 0
                    while True:
                        page = await client.list_events(
                            worker_id=wid, after_seq=cursor, page_size=1000
                        )
                        if not page.events:
                            break
                        events += len(page.events)
                        cursor = page.events[-1].seq
                    say(f"  [{SECTION}] replaying {events} events of one worker")
                    path = f"/api/runtimes/{rid}/workers/{wid}/events?after_seq=0"
                    direct_cpu: list[float] = []
                    backend_cpu: list[float] = []
                    for rep in range(1, reps + 1):
                        cpu = time.process_time()  # (the bench process does nothing else)
                        rate.baseline.append(await _direct(client, wid, events))
                        direct_cpu.append((time.process_time() - cpu) / events * 1e6)
                        cpu = cpu_ns(be.pid)
                        rate.product.append(await _through_backend(http, path, events))
                        backend_cpu.append((cpu_ns(be.pid) - cpu) / events / 1e3)
                        show(rate, rep)
                    # Wall-clock rates of a pipeline (runtime -> Backend -> reader) against a
                    # single consumer swing with the machine's load; CPU per event does not.
                    rate.note = (
                        f"CPU per event: the Backend process {statistics.median(backend_cpu):.1f}"
                        f" us vs the direct consumer's "
                        f"{statistics.median(direct_cpu):.1f} us, all threads of each (the "
                        "same conversion of the runtime's messages; the Backend adds JSON, its "
                        "queue and HTTP); the runtime, the Backend and the reader share the cores"
                    )
                    before = rss_bytes(be.pid)
                    async with contextlib.AsyncExitStack() as stack:
                        readers = []
                        for _ in range(STREAMS):
                            resp = await stack.enter_async_context(
                                http.stream("GET", path.replace("=0", f"={cursor}"))
                            )
                            readers.append(resp.aiter_bytes())
                            await anext(readers[-1])
                        await asyncio.sleep(0.5)
                        after = rss_bytes(be.pid)
                    rss.baseline.append(before / 2**20)
                    rss.product.append(after / 2**20)
                    rss.note = (
                        f"{before / 2**20:.0f} MiB idle -> {after / 2**20:.0f} MiB with "
                        f"{STREAMS} streams (~{(after - before) / STREAMS / 1024:.0f} KiB each)"
                    )
                    show(rss)
    return [rate, rss]
