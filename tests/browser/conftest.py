"""Browser fixtures: Playwright (pinned) driving Debian's chromium — Playwright's own browser
download cannot work on these machines. Without /usr/bin/chromium the browser tests skip, except
under CI=true, where they fail (.ci/run installs it). Screenshots go to ``artifacts/`` (the test
artifacts; ``ARTIFACTS_DIR`` overrides)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from backend_serving import console  # noqa: F401 - the fixture, shared with tests/backend
from browser_support import chromium, new_context


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    async with chromium() as b:
        yield b


@pytest.fixture
async def page(browser: Any) -> AsyncIterator[Any]:
    context = await new_context(browser, viewport={"width": 1280, "height": 800})
    p = await context.new_page()
    try:
        yield p
    finally:
        await context.close()
