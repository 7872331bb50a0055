"""Config bundles in the web console (issue 13 item 5), in a real browser (Debian's chromium via
Playwright) against a real Backend subprocess with ``bundles_dir``, its embedded runtime and a
remote ``worker-runtime serve`` subprocess: the panel shows each bundle's availability per
runtime, a bad file's error, and a bundle's profile is offered by the create form's picker;
creating a worker with it makes a worker on that bundle that answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend_serving import ConsoleFactory, eventually
from browser_support import screenshot

BOUND = 30.0  # generous upper bounds on a shared 2-core machine, never speed assertions
TEAM = b'[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\ndescription = "From a bundle."\n'


async def test_a_bundle_profile_is_offered_in_the_picker_and_creates_a_working_worker(
    console: ConsoleFactory, page: Any, tmp_path: Path
) -> None:
    d = tmp_path / "bundles"
    d.mkdir()
    (d / "team.toml").write_bytes(TEAM)
    (d / "broken.toml").write_bytes(b"[profiles.x\n")
    c = await console(bundles_dir=d)
    _, remote_id = await c.runtime_ids()

    await page.goto(c.backend.url)
    await page.wait_for_selector("#bundles:not([hidden])", timeout=BOUND * 1000)
    team = page.locator('#bundle-list li[data-bundle-id="team"]')

    async def present_on_both() -> bool:
        states: list[str] = await team.locator(".chip").evaluate_all(
            "cs => cs.map(c => c.dataset.state)"
        )
        return states == ["present", "present"]

    await eventually(present_on_both, timeout=BOUND, interval=0.25)
    broken = page.locator('#bundle-list li[data-bundle-id="broken"] .error')
    assert "not valid TOML" in (await broken.text_content() or "")

    await page.select_option("#create-runtime", remote_id)
    option = page.locator('#create-profile option[data-bundle^="team@sha256:"]')
    assert await option.count() == 1
    assert (await option.text_content() or "").startswith("helper")
    await page.select_option("#create-profile", await option.get_attribute("value"))
    await page.fill("#create-name", "bundle helper")
    await page.click('#create-form button[type="submit"]')

    async def opened() -> bool:  # the form routes the page to the new worker's console
        return (await page.locator("#worker-name").text_content() or "") == "bundle helper"

    await eventually(opened, timeout=BOUND, interval=0.1)
    assert (await page.locator("#create-error").text_content() or "") == ""
    wid = (await page.evaluate("location.hash")).rsplit("/", 1)[1]
    detail = (await c.call("GET", f"/api/runtimes/{remote_id}/workers/{wid}")).json()["worker"]
    assert detail["config_bundle"]["id"] == "team"
    assert detail["profile"] == "helper"

    await page.fill("#input", "hello from a bundle")
    await page.press("#input", "Enter")

    async def answered() -> bool:
        texts = await page.locator(
            '#transcript .entry[data-role="ASSISTANT"] .text'
        ).all_text_contents()
        return "hello from a bundle" in texts

    await eventually(answered, timeout=BOUND, interval=0.1)
    await page.click("#bundles summary")  # the panel, open for the screenshot
    await screenshot(page, "console-bundles")
