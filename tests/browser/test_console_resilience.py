"""The console when things go wrong, in a real browser: Cancel stops the model itself (the
scripted provider sees its HTTP stream closed), and a remote runtime killed with SIGKILL shows a
banner, then the stream resumes from its last id after the restart."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from backend_serving import ConsoleFactory, eventually
from browser_support import new_context, screenshot

from engine.testing import LoopbackServer, Reply

BOUND = 30.0
CANCEL_BOUND = 10.0  # the "~2 s", with the margin a shared 2-core machine needs


def sse(*payloads: Any) -> bytes:
    return b"".join(
        f"data: {p if isinstance(p, str) else json.dumps(p)}\n\n".encode() for p in payloads
    )


def delta(text: str, finish: str | None = None) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


async def badge(page: Any) -> str:
    return ((await page.locator("#run-badge").text_content()) or "").strip()


async def open_worker(page: Any, url: str, runtime_id: str, worker_id: str) -> None:
    await page.goto(f"{url}/#/w/{runtime_id}/{worker_id}")
    await page.wait_for_selector("#console:not([hidden])", timeout=BOUND * 1000)
    await page.wait_for_selector(f'#worker-list li[data-worker-id="{worker_id}"]')


async def test_cancel_stops_the_model_and_the_next_input_starts_at_once(
    console: ConsoleFactory, page: Any
) -> None:
    # The first request streams a little, then hangs (a model still generating); the second
    # answers at once.
    hanging = Reply(body=sse(delta("thinking about it ")), then="hang")
    quick = Reply(body=sse(delta("done", "stop"), "[DONE]"))
    async with LoopbackServer([hanging, quick]) as provider:
        c = await console(provider_url=provider.url)
        _, rid = await c.runtime_ids()
        wid = await c.create_worker(rid, "scripted")
        await open_worker(page, c.backend.url, rid, wid)
        await page.fill("#input", "tell me a long story")
        await page.press("#input", "Enter")
        await eventually(lambda: _live_has(page, "thinking"), timeout=BOUND)
        assert await badge(page) == "RUNNING"
        run_id = await page.locator("#run-badge").get_attribute("data-run-id")
        await page.click("#cancel")
        await eventually(lambda: _badge_is(page, "CANCELLED"), timeout=CANCEL_BOUND)
        got = (await c.call("GET", f"/api/runtimes/{rid}/runs/{run_id}")).json()["run"]
        assert got["state"] == "CANCELLED"
        async with asyncio.timeout(CANCEL_BOUND):
            await provider.disconnected.wait()  # the provider's HTTP stream was closed
        # The partial answer is kept, marked; the next input starts at once (no busy).
        await page.fill("#input", "next")
        await page.press("#input", "Enter")
        await eventually(lambda: _badge_in(page, "COMPLETED", "FAILED"), timeout=BOUND)
        stop = await page.locator("#run-stop").text_content()
        assert await badge(page) == "COMPLETED", stop
        # The POST's answer may come after the stream's COMPLETED (setBadge keeps the later
        # state): the status clears when it does.
        await eventually(lambda: _status_is(page, ""), timeout=BOUND)
        await screenshot(page, "console-cancelled")


async def _live_has(page: Any, text: str) -> bool:
    # polled from Python: the page's CSP (no eval) refuses wait_for_function's string predicates
    return text in ((await page.locator("#live .text").text_content()) or "")


async def _status_is(page: Any, text: str) -> bool:
    return (await page.locator("#composer-status").text_content() or "") == text


async def _badge_in(page: Any, *states: str) -> bool:
    return await badge(page) in states


async def _badge_is(page: Any, state: str) -> bool:
    return await badge(page) == state


async def test_kill9_of_the_remote_runtime_shows_a_banner_and_resumes(
    console: ConsoleFactory, page: Any
) -> None:
    c = await console(delay_ms=300)
    _, rid = await c.runtime_ids()
    wid = await c.create_worker(rid, "slow")
    await open_worker(page, c.backend.url, rid, wid)
    await page.fill("#input", " ".join(f"w{i}" for i in range(60)))
    await page.press("#input", "Enter")
    await eventually(lambda: _live_has(page, "w1 w2"), timeout=BOUND)
    cut_run = await page.locator("#run-badge").get_attribute("data-run-id")
    assert await page.locator("#banner-runtime").is_hidden()
    c.remote.kill9()
    await page.wait_for_selector("#banner-runtime:not([hidden])", timeout=CANCEL_BOUND * 1000)
    await screenshot(page, "console-runtime-unreachable")
    await c.restart_remote()
    await page.wait_for_selector("#banner-runtime[hidden]", state="attached", timeout=BOUND * 1000)
    # The stream resumed after its last id: the cut run's end (INTERRUPTED, set by the runtime's
    # recovery) arrives as an event, and a new run streams into the same page.
    await eventually(lambda: _badge_is(page, "INTERRUPTED"), timeout=BOUND)
    assert await page.locator("#run-badge").get_attribute("data-run-id") == cut_run
    await page.fill("#input", "after the restart")
    await page.press("#input", "Enter")
    await eventually(lambda: _badge_is(page, "COMPLETED"), timeout=BOUND)
    texts = await page.locator(
        '#transcript .entry[data-role="ASSISTANT"] .text'
    ).all_text_contents()
    assert texts[-1] == "after the restart"


async def test_eight_console_tabs_leave_connections_for_requests(
    console: ConsoleFactory, browser: Any
) -> None:
    """Over HTTP/1.1 a browser opens ~6 connections per origin: eight tabs each holding an
    EventSource would stall every other request. The tabs share a few stream slots; the one in
    use streams; a POST from any tab completes."""
    c = await console(delay_ms=100)
    _, rid = await c.runtime_ids()
    wids = [await c.create_worker(rid, "slow", f"tab {i}") for i in range(8)]
    context = await new_context(browser, viewport={"width": 1100, "height": 700})
    try:
        tabs = []
        for wid in wids:
            tab = await context.new_page()
            await open_worker(tab, c.backend.url, rid, wid)
            tabs.append(tab)
        # The last tab is the one in use: it sends, and its answer streams in.
        last = tabs[-1]
        text = " ".join(f"t{i}" for i in range(25))
        await last.fill("#input", text)
        await last.press("#input", "Enter")
        await eventually(lambda: _live_has(last, "t3 t4"), timeout=BOUND)
        await eventually(lambda: _has_text(last, text), timeout=BOUND)
        # A POST from every tab completes (none waits behind the streams' connections).
        for i, tab in enumerate(tabs[:-1]):
            status = await tab.evaluate(
                """async ([rid, wid, n]) => {
                    const r = await fetch(`/api/runtimes/${rid}/workers/${wid}/input`, {
                        method: "POST",
                        headers: {"content-type": "application/json", "x-worker-console": "1"},
                        body: JSON.stringify({text: `from tab ${n}`}),
                        signal: AbortSignal.timeout(10000),
                    });
                    return r.status;
                }""",
                [rid, wids[i], i],
            )
            assert status == 202
    finally:
        await context.close()


async def _has_text(page: Any, text: str) -> bool:
    shown = await page.locator(
        '#transcript .entry[data-role="ASSISTANT"] .text'
    ).all_text_contents()
    return text in shown
