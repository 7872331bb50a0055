"""When a worker's event stream ends for good the console says why and stops asking.

The Backend ends a stream with ``event: end`` and a reason (``WORKER_DELETED``,
``RUNTIME_IDENTITY_CHANGED``, ...) so that the page stops instead of reconnecting. The page
ignored the reason: a deleted worker's page went quiet with no word, and after its runtime came
back as another one (a wiped data directory) it kept "Runtime unreachable — reconnecting…" up
for good; and its 3-second "take a free slot" timer opened the stream again and again (a new
request, a new upstream subscription, each ending at once). Now the page shows the reason in a
banner and opens no stream for that worker until it is opened again.

Real chromium, a real Backend and a real remote ``worker-runtime serve`` (deleted through a
RuntimeClient; killed with SIGKILL and restarted on an emptied data directory)."""

from __future__ import annotations

import asyncio
import shutil
from typing import Any

from backend_serving import REMOTE_TOKEN, ConsoleFactory, eventually

from runtime_client import RuntimeClient

BOUND = 30.0


async def _opened(page: Any, url: str, runtime_id: str, worker_id: str) -> list[str]:
    """Open the worker's page; returns the list of event-stream requests it makes."""
    streams: list[str] = []
    page.on("request", lambda r: streams.append(r.url) if "/events" in r.url else None)
    await page.goto(f"{url}/#/w/{runtime_id}/{worker_id}")
    await page.wait_for_selector("#console:not([hidden])", timeout=BOUND * 1000)
    await eventually(lambda: bool(streams), timeout=BOUND)
    return streams


async def _ended(page: Any, streams: list[str], words: str) -> None:
    await page.wait_for_selector("#banner-ended:not([hidden])", timeout=BOUND * 1000)
    assert words in ((await page.text_content("#banner-ended")) or "")
    assert await page.locator("#banner-runtime").is_hidden()
    before = len(streams)
    await asyncio.sleep(7)  # two turns of the page's 3-s slot timer, and a focus
    await page.evaluate("window.dispatchEvent(new Event('focus'))")
    await asyncio.sleep(1)
    assert len(streams) == before, streams


async def test_a_deleted_worker_and_a_replaced_runtime_end_the_stream_with_a_reason(
    console: ConsoleFactory, page: Any
) -> None:
    c = await console(delay_ms=50)
    _, rid = await c.runtime_ids()
    deleted = await c.create_worker(rid, "slow", "to be deleted")
    streams = await _opened(page, c.backend.url, rid, deleted)
    async with RuntimeClient(f"127.0.0.1:{c.remote.port}", token=REMOTE_TOKEN) as client:
        await client.delete_worker(deleted)
    await _ended(page, streams, "deleted")

    kept = await c.create_worker(rid, "slow", "on a replaced runtime")
    streams = await _opened(page, c.backend.url, rid, kept)
    c.remote.kill9()
    await page.wait_for_selector("#banner-runtime:not([hidden])", timeout=BOUND * 1000)
    shutil.rmtree(c.remote_data)  # it comes back as another runtime
    await c.restart_remote()
    await _ended(page, streams, "another runtime")
