"""A console link whose worker part is not valid percent-encoding (``#/w/%E0%A4%A/x``: cut off
when pasted, or made by hand) opens the console as with no link: the first worker is shown.
Before, ``decodeURIComponent`` threw a ``URIError`` out of the page's start, uncaught, and the
page showed no worker at all until the hash was changed by hand. Real chromium, real Backend."""

from __future__ import annotations

from pathlib import Path

from backend_serving import start_backend
from browser_support import chromium, new_context

BOUND_MS = 30_000
CONFIG = '[companion]\nprofile = "echo"\ndisplay_name = "Companion"\n'


async def test_a_malformed_link_opens_the_first_worker(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with chromium() as browser:
            context = await new_context(browser)
            page = await context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{backend.url}/#/w/%E0%A4%A/x")
            await page.wait_for_selector("#console:not([hidden])", timeout=BOUND_MS)
            assert await page.text_content("#worker-name") == "Companion"
            assert errors == []
            await context.close()
    finally:
        backend.terminate()
    assert "Traceback" not in backend.stderr()
