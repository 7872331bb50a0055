"""The console has a "Log out" button (before, only ``POST /api/logout`` existed: a person at a
shared machine could not end their session short of clearing cookies). In a real browser
(Debian's chromium): log in, see the workers, press "Log out": the page shows the login form and
none of what it showed, and the cookie the browser had — copied before logging out — no longer
opens the API. An open console (no token) shows no button: it has no session to end."""

from __future__ import annotations

from typing import Any

from backend_serving import ConsoleFactory

from backend.security import COOKIE

BOUND_MS = 30_000
TOKEN = "console-tok-logout-button-7"


async def test_the_logout_button_ends_the_session(console: ConsoleFactory, page: Any) -> None:
    c = await console(token=TOKEN)
    assert (await c.call("POST", "/api/login", json={"token": TOKEN})).status_code == 204
    await c.runtime_ids()  # both runtimes READY (through a session of the test's own)
    await page.goto(c.backend.url + "/")
    await page.wait_for_selector("#login-form", state="visible", timeout=BOUND_MS)
    await page.fill("#login-token", TOKEN)
    await page.click("#login-form button[type=submit]")
    await page.wait_for_selector("#worker-list li", timeout=BOUND_MS)  # logged in: workers
    assert await page.is_visible("#logout")
    cookies = {k["name"]: k["value"] for k in await page.context.cookies()}
    old = cookies[COOKIE]
    assert old

    await page.click("#logout")
    await page.wait_for_selector("#login-form", state="visible", timeout=BOUND_MS)
    assert await page.is_hidden("#app")
    assert await page.is_hidden("#logout")
    assert await page.locator("#worker-list li").count() == 0  # nothing of before is left

    # the old cookie, sent by hand (as a copy of it would be), opens nothing any more
    c.http.cookies.clear()
    refused = await c.call("GET", "/api/workers", headers={"cookie": f"{COOKIE}={old}"})
    assert refused.status_code == 401
    # and the page, reloaded, asks to log in again
    await page.reload()
    await page.wait_for_selector("#login-form", state="visible", timeout=BOUND_MS)


async def test_an_open_console_has_no_logout_button(console: ConsoleFactory, page: Any) -> None:
    c = await console()
    await c.runtime_ids()
    await page.goto(c.backend.url + "/")
    await page.wait_for_selector("#worker-list li", timeout=BOUND_MS)
    assert await page.is_hidden("#logout")
