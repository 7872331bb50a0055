"""A Backend subprocess on its own (embedded runtime only): the Companion is the same worker
after a restart and pinned first; open console streams are bounded, and a browser that goes
away frees its stream (the upstream subscription is cancelled)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import httpx
from backend_serving import CSRF, eventually, start_backend

BOUND = 30.0
CONFIG = """\
max_streams = 2
heartbeat_s = 0.2
[companion]
profile = "echo"
display_name = "Buddy"
"""


async def _companion(http: httpx.AsyncClient) -> tuple[str, str]:
    workers = (await http.get("/api/workers")).json()["workers"]
    first = workers[0]
    assert first["companion"] is True
    assert [w["companion"] for w in workers].count(True) == 1
    return first["runtime_id"], first["worker"]["worker_id"]


async def test_the_companion_survives_a_restart(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with httpx.AsyncClient(base_url=backend.url, headers=CSRF, timeout=BOUND) as http:
            rid, wid = await _companion(http)
            detail = (await http.get(f"/api/runtimes/{rid}/workers/{wid}")).json()["worker"]
            assert (detail["display_name"], detail["profile"]) == ("Buddy", "echo")
            other = await http.post("/api/workers", json={"runtime_id": rid, "profile": "echo"})
            assert other.status_code == 201
            sent = await http.post(f"/api/runtimes/{rid}/workers/{wid}/input", json={"text": "hi"})
            assert sent.status_code == 202
    finally:
        # uvicorn shuts down gracefully on SIGTERM, then re-raises it: the exit status says so
        assert backend.terminate() in (0, -signal.SIGTERM)
    again = await start_backend(tmp_path, CONFIG)
    try:
        async with httpx.AsyncClient(base_url=again.url, headers=CSRF, timeout=BOUND) as http:
            assert await _companion(http) == (rid, wid)  # same runtime, same worker, first
            entries = (await http.get(f"/api/runtimes/{rid}/workers/{wid}/transcript")).json()
            assert [e["message"]["text"] for e in entries["entries"]][:1] == ["hi"]
            assert len((await http.get("/api/workers")).json()["workers"]) == 2
    finally:
        again.terminate()


async def test_streams_are_bounded_and_freed_when_the_browser_leaves(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with httpx.AsyncClient(base_url=backend.url, headers=CSRF, timeout=BOUND) as http:
            rid, wid = await _companion(http)
            url = f"/api/runtimes/{rid}/workers/{wid}/events"
            readers = []  # kept: a dropped reader closes its response (the browser left)
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(2):
                    resp = await stack.enter_async_context(http.stream("GET", url))
                    assert resp.status_code == 200
                    readers.append(resp.aiter_bytes())
                    async with asyncio.timeout(BOUND):
                        assert b"retry:" in await anext(readers[-1])
                refused = await http.get(url)
                assert refused.status_code == 429
                assert refused.json()["error"]["reason"] == "TOO_MANY_STREAMS"
                assert refused.headers["retry-after"].isdigit()
                assert (await http.get("/healthz")).json()["open_streams"] == 2

            async def freed() -> bool:
                return bool((await http.get("/healthz")).json()["open_streams"] == 0)

            await eventually(freed, timeout=BOUND)
            resp = await http.get(url + "?after_seq=abc")
            assert resp.status_code == 400
    finally:
        backend.terminate()
