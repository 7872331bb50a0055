"""Constants and helpers of the browser tests (tests/browser): where Debian's chromium is, the
flags it runs with, and screenshots saved as test artifacts."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(os.environ.get("ARTIFACTS_DIR", Path(__file__).resolve().parents[1] / "artifacts"))


# Playwright's default bound (30 s) for a launch, an action or a navigation, doubled: a safety
# net for a browser on a loaded 2-core machine, never a speed assertion.
PLAYWRIGHT_TIMEOUT_MS = 60_000


async def new_context(browser: Any, **options: Any) -> Any:
    """``browser.new_context(**options)`` with :data:`PLAYWRIGHT_TIMEOUT_MS` for its pages."""
    context = await browser.new_context(**options)
    context.set_default_timeout(PLAYWRIGHT_TIMEOUT_MS)
    context.set_default_navigation_timeout(PLAYWRIGHT_TIMEOUT_MS)
    return context


@contextlib.asynccontextmanager
async def chromium(*extra_args: str) -> AsyncIterator[Any]:
    """Debian's chromium under Playwright, with ``CHROMIUM_ARGS`` and ``extra_args``. Without
    it the test skips, except under CI=true, where it fails (.ci/run installs it)."""
    if not CHROMIUM.exists():  # noqa: ASYNC240 - one stat, before the browser starts
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[*CHROMIUM_ARGS, *extra_args],
            headless=True,
            timeout=PLAYWRIGHT_TIMEOUT_MS,
        )
        try:
            yield b
        finally:
            await b.close()


async def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, tiny
    path = ARTIFACTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=False)
    return path
