"""The console works when the browser does not count its origin as secure: plain HTTP under a
name that is not ``localhost`` (``http://console.lan:8080``, an ``allowed_hosts`` name; or a LAN
address with a login token). Such a page has no ``crypto.randomUUID`` (a secure-context API), and
the composer called it for every send's ``request_id``: every send failed in the page with
"crypto.randomUUID is not a function" and nothing reached the worker. Now the id falls back to
``crypto.getRandomValues``, which every context has.

In a real browser (Debian's chromium) told that ``console.test`` resolves to 127.0.0.1, against a
real ``worker-backend serve`` whose ``allowed_hosts`` names it."""

from __future__ import annotations

from pathlib import Path

from backend_serving import start_backend
from browser_support import chromium, new_context

BOUND_MS = 30_000
CONFIG = 'allowed_hosts = ["console.test"]\n[companion]\nprofile = "echo"\n'


async def test_a_send_from_a_page_that_is_not_a_secure_context_reaches_the_worker(
    tmp_path: Path,
) -> None:
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with chromium("--host-resolver-rules=MAP console.test 127.0.0.1") as browser:
            context = await new_context(browser)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"http://console.test:{backend.port}/")
            assert await page.evaluate("window.isSecureContext") is False
            await page.wait_for_selector("#console:not([hidden])", timeout=BOUND_MS)
            await page.fill("#input", "hello from a plain origin")
            await page.click("#composer button[type=submit]")
            # the echo's answer is committed into the transcript (user entry, then the reply)
            reply = page.locator("#transcript .entry[data-role=ASSISTANT]").last
            await reply.wait_for(timeout=BOUND_MS)
            assert "plain origin" in (await reply.text_content() or "")
            assert await page.text_content("#composer-status") == ""
            assert errors == []
            await context.close()
    finally:
        backend.terminate()
    assert "Traceback" not in backend.stderr()
