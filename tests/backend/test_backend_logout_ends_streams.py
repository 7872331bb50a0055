"""Logging out ends the event streams opened with that session, over real HTTP to a real
``worker-backend serve``. Before, ``POST /api/logout`` made a copy of the cookie useless for new
requests, but a console event stream opened with it went on delivering every event of the
worker for as long as its connection lasted (a stolen cookie's stream outlived the logout).
Now the stream sends ``event: end`` (``SESSION_ENDED``) within a heartbeat and closes; another
session's stream goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from backend_serving import CSRF, eventually, start_backend

BOUND = 20.0  # the end is due within one heartbeat (0.2 s)
TOKEN = "console-tok-logout-streams"
CONFIG = 'token_env = "CONSOLE_TOKEN"\nstore = "memory"\nheartbeat_s = 0.2\n'
CONFIG += '[companion]\nprofile = "echo"\n'


async def _until_closed(reader: AsyncIterator[bytes]) -> bytes:
    """Everything the stream sends until the server closes it."""
    seen = b""
    async for chunk in reader:
        seen += chunk
    return seen


async def test_logout_ends_the_sessions_open_streams(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, CONFIG, {"CONSOLE_TOKEN": TOKEN})
    try:
        async with (
            httpx.AsyncClient(base_url=backend.url, headers=CSRF, timeout=BOUND) as mine,
            httpx.AsyncClient(base_url=backend.url, headers=CSRF, timeout=BOUND) as other,
        ):
            for http in (mine, other):
                assert (await http.post("/api/login", json={"token": TOKEN})).status_code == 204
            first = (await mine.get("/api/workers")).json()["workers"][0]
            rid, wid = first["runtime_id"], first["worker"]["worker_id"]
            path = f"/api/runtimes/{rid}/workers/{wid}/events"
            async with contextlib.AsyncExitStack() as stack:
                ended = await stack.enter_async_context(mine.stream("GET", path))
                kept = await stack.enter_async_context(other.stream("GET", path))
                assert (ended.status_code, kept.status_code) == (200, 200)
                ended_reader, kept_reader = ended.aiter_bytes(), kept.aiter_bytes()
                async with asyncio.timeout(BOUND):
                    assert b"retry:" in await anext(ended_reader)
                    assert b"retry:" in await anext(kept_reader)

                assert (await mine.post("/api/logout")).status_code == 204
                try:
                    async with asyncio.timeout(BOUND):
                        rest = await _until_closed(ended_reader)
                except TimeoutError:
                    raise AssertionError("the stream outlived its session's logout") from None
                assert b"event: end" in rest
                assert b'"reason":"SESSION_ENDED"' in rest
                # the other session's stream still flows (heartbeats), and it may still log in
                async with asyncio.timeout(BOUND):
                    assert await anext(kept_reader)
                    assert await anext(kept_reader)
            assert (await other.get("/api/workers")).status_code == 200

            async def no_streams() -> bool:
                return bool((await other.get("/healthz")).json()["open_streams"] == 0)

            await eventually(no_streams, timeout=BOUND)
    finally:
        backend.terminate()
