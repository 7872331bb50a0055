"""Browser fixtures: Playwright (pinned) driving Debian's chromium — Playwright's own browser
download cannot work on these machines. Without /usr/bin/chromium the browser tests skip, except
under CI=true, where they fail (.ci/run installs it). Screenshots go to ``artifacts/`` (the test
artifacts; ``ARTIFACTS_DIR`` overrides)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
from backend_serving import console  # noqa: F401 - the fixture, shared with tests/backend
from browser_support import CHROMIUM, CHROMIUM_ARGS


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    if not CHROMIUM.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
        pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        b = await pw.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    p = await context.new_page()
    try:
        yield p
    finally:
        await context.close()
