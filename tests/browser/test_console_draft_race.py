"""A draft typed while the previous send's answer is on its way is kept (backend/static/app.js).

The console emptied the input box when a send's answer came in, whatever the box held by then:
the run's events (RUNNING) can arrive before that answer, so a person who saw the worker
answering and typed the next question lost it when the answer came — and, under full load, so
did tests/browser/test_console_chat.py::test_busy_under_reject_keeps_the_draft. Now the box is
emptied only if it still holds the text sent, and only the latest send writes the status line.

A real browser (Debian's chromium) against a real Backend and runtime; the first send's request
is held in the browser (Playwright's routing) until the next draft is typed, so the moment is
open deterministically instead of by load.
"""

from __future__ import annotations

import asyncio
from typing import Any

from backend_serving import ConsoleFactory, eventually
from test_console_chat import BOUND, open_worker


async def test_a_draft_typed_during_a_send_is_kept(console: ConsoleFactory, page: Any) -> None:
    c = await console(delay_ms=50)
    _, remote_id = await c.runtime_ids()
    wid = await c.create_worker(remote_id, "slow")
    await open_worker(page, c, remote_id, wid)

    held: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def hold(route: Any) -> None:
        if not held.done():
            held.set_result(route)  # the first send: released by the test
        else:
            await route.continue_()

    await page.route("**/input", hold)
    await page.fill("#input", "the first question")
    await page.press("#input", "Enter")
    route = await asyncio.wait_for(held, BOUND)  # the send is on its way
    draft = "the next question, typed meanwhile"
    await page.fill("#input", draft)
    await route.continue_()

    async def answered() -> bool:
        status = (await page.locator("#composer-status").text_content()) or ""
        return "sending" not in status

    await eventually(answered, timeout=BOUND)
    # before: "" (the first send's answer emptied the box)
    assert await page.input_value("#input") == draft
