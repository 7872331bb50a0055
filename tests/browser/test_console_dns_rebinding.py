"""The DNS-rebinding attack on an open console, in a real browser (Debian's chromium).

Chromium is told that ``rebind.test`` resolves to 127.0.0.1 (``--host-resolver-rules``), which is
what a rebinding DNS server makes a victim's browser believe about an attacker's name. A page at
``http://rebind.test:PORT`` is then same-origin with the console: without the Host check it could
read the workers' list and drive them. The Backend refuses every request of that origin, while the
same console opened at 127.0.0.1 works."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from backend_serving import ConsoleFactory
from browser_support import chromium, new_context

BOUND = 30.0


@pytest.fixture
async def rebound_browser() -> AsyncIterator[Any]:
    async with chromium("--host-resolver-rules=MAP rebind.test 127.0.0.1") as b:
        yield b


async def test_a_rebinding_origin_gets_nothing_from_an_open_console(
    console: ConsoleFactory, rebound_browser: Any
) -> None:
    c = await console()
    await c.runtime_ids()
    port = c.backend.port
    context = await new_context(rebound_browser)
    page = await context.new_page()
    try:
        # The console itself, at its address: the page loads and lists the workers.
        ok = await page.goto(f"http://127.0.0.1:{port}/")
        assert ok is not None
        assert ok.status == 200
        listed = await page.evaluate(
            "fetch('/api/workers').then(r => r.json()).then(b => b.workers.length)"
        )
        assert listed >= 1  # the Companion at least

        # The attacker's name, resolved to the same socket: refused, page and API alike.
        refused = await page.goto(f"http://rebind.test:{port}/")
        assert refused is not None
        assert refused.status == 403
        assert "HOST_NOT_ALLOWED" in (await refused.text())
        status, body = await page.evaluate(
            """async () => {
                const r = await fetch('/api/workers', {headers: {'x-worker-console': '1'}});
                return [r.status, await r.text()];
            }"""
        )
        assert status == 403
        assert "HOST_NOT_ALLOWED" in body
        assert "worker_id" not in body
    finally:
        await context.close()
