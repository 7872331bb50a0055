"""The web console in a real browser (Debian's chromium via Playwright): a real Backend subprocess
over its embedded runtime (SQLite) and a real remote ``worker-runtime serve`` subprocess.
Browser → Backend → Runtime, and back as SSE."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
from typing import Any

from backend_serving import REMOTE_TOKEN, Console, ConsoleFactory, eventually
from browser_support import screenshot

BOUND = 30.0  # generous upper bounds on a shared 2-core machine, never speed assertions


async def open_worker(page: Any, c: Console, runtime_id: str, worker_id: str) -> None:
    await page.goto(f"{c.backend.url}/#/w/{runtime_id}/{worker_id}")
    await page.wait_for_selector(
        f'#worker-list li[data-worker-id="{worker_id}"]', timeout=BOUND * 1000
    )
    await page.wait_for_selector("#console:not([hidden])", timeout=BOUND * 1000)


async def assistant_texts(page: Any) -> list[str]:
    texts: list[str] = await page.locator(
        '#transcript .entry[data-role="ASSISTANT"] .text'
    ).all_text_contents()
    return texts


async def badge(page: Any) -> str:
    text: str = await page.locator("#run-badge").text_content() or ""
    return text.strip()


async def test_round_trip_through_the_backend_streams_into_the_page(
    console: ConsoleFactory, page: Any
) -> None:
    c = await console(delay_ms=150)
    embedded_id, remote_id = await c.runtime_ids()
    wid = await c.create_worker(remote_id, "slow", "remote helper")
    await open_worker(page, c, remote_id, wid)
    # The list shows the Companion (pinned first) and the remote worker.
    items = page.locator("#worker-list li")
    assert await items.first.get_attribute("class") == "worker companion" or "companion" in (
        await items.first.get_attribute("class") or ""
    )
    assert await items.first.get_attribute("data-runtime-id") == embedded_id
    assert await page.locator(f'#worker-list li[data-worker-id="{wid}"]').count() == 1

    text = "the quick brown fox jumps over the lazy dog again and again"
    await page.fill("#input", text)
    await page.press("#input", "Enter")
    samples: list[str] = []

    async def finished() -> bool:
        live = await page.locator("#live .text").text_content() or ""
        if live and (not samples or samples[-1] != live):
            samples.append(live)
        return text in await assistant_texts(page)

    await eventually(finished, timeout=BOUND, interval=0.05)
    # The text grew over several samples, each a prefix of the next, and ends equal to the input.
    assert len(samples) >= 3, samples
    assert all(b.startswith(a) for a, b in itertools.pairwise(samples))
    assert (await assistant_texts(page)).count(text) == 1
    await eventually(lambda: _is(page, "COMPLETED"), timeout=BOUND)
    assert (await page.locator("#usage-run").text_content() or "").strip() not in (
        "",
        "\u2013",
    )  # an en dash: no usage yet
    assert await page.locator("#live").is_hidden()
    await screenshot(page, "console-round-trip")


async def _is(page: Any, state: str) -> bool:
    return await badge(page) == state


async def test_model_text_is_rendered_as_text_never_html(
    console: ConsoleFactory, page: Any
) -> None:
    c = await console()
    embedded_id, _ = await c.runtime_ids()
    companion = (await c.call("GET", "/api/workers")).json()["workers"][0]
    assert companion["companion"] is True
    wid = companion["worker"]["worker_id"]
    await open_worker(page, c, embedded_id, wid)
    payload = '<img src=x onerror="window.__pwned=1">'
    await page.fill("#input", payload)
    await page.press("#input", "Enter")
    await eventually(lambda: _has_assistant(page, payload), timeout=BOUND)
    await asyncio.sleep(0.5)  # give a (wrongly) injected image the time to fail and fire
    assert await page.evaluate("typeof window.__pwned") == "undefined"
    assert await page.locator("#transcript img, #live img").count() == 0
    assert await page.locator("img").count() == 0


async def _has_assistant(page: Any, text: str) -> bool:
    return text in await assistant_texts(page)


async def test_busy_under_reject_keeps_the_draft(console: ConsoleFactory, page: Any) -> None:
    c = await console(delay_ms=300)
    _, remote_id = await c.runtime_ids()
    wid = await c.create_worker(remote_id, "slow")
    await open_worker(page, c, remote_id, wid)
    # A run of a minute (200 words, 300 ms each): it is still answering when the draft is sent,
    # however slowly the loaded browser gets there (30 words, 9 s, was not always enough).
    await page.fill("#input", " ".join(f"w{i}" for i in range(200)))
    await page.press("#input", "Enter")
    await eventually(lambda: _is(page, "RUNNING"), timeout=BOUND)
    # The badge can turn RUNNING (from the run's events) before the first send's own answer is
    # in: wait for that answer (it empties the box and the status), or a draft typed now would
    # race it (under full load, that answer came after the draft was typed and cleared it).
    await eventually(lambda: _composer_idle(page), timeout=BOUND)
    draft = "a second question while the first is answered"
    await page.fill("#input", draft)
    await page.press("#input", "Enter")
    await eventually(lambda: _status_has(page, "busy"), timeout=BOUND)
    assert await page.input_value("#input") == draft


async def _composer_idle(page: Any) -> bool:
    """The last send's answer is in: the box emptied, no "sending…" status."""
    status = (await page.locator("#composer-status").text_content()) or ""
    return await page.input_value("#input") == "" and "sending" not in status


async def _status_has(page: Any, text: str) -> bool:
    return text in ((await page.locator("#composer-status").text_content()) or "")


async def test_reload_mid_stream_shows_the_answer_exactly_once(
    console: ConsoleFactory, page: Any
) -> None:
    c = await console(delay_ms=60)
    _, remote_id = await c.runtime_ids()
    wid = await c.create_worker(remote_id, "slow")
    await open_worker(page, c, remote_id, wid)
    rng = random.Random(12)
    reloads = 0
    texts: list[str] = []
    while reloads < 20:
        text = " ".join(f"r{len(texts)}w{i}" for i in range(40))
        texts.append(text)
        await c.send(remote_id, wid, text)
        for _ in range(5):  # five reloads at random moments of each ~2.4 s run
            await asyncio.sleep(rng.uniform(0.05, 0.5))
            await page.reload()
            await page.wait_for_selector("#console:not([hidden])", timeout=BOUND * 1000)
            reloads += 1
        await eventually(lambda t=text: _has_assistant(page, t), timeout=BOUND)
    for text in texts:
        await eventually(lambda t=text: _has_assistant(page, t), timeout=BOUND)
    shown = await assistant_texts(page)
    transcript = (
        await c.call("GET", f"/api/runtimes/{remote_id}/workers/{wid}/transcript?page_size=1000")
    ).json()["entries"]
    committed = [e["message"]["text"] for e in transcript if e["message"]["role"] == "ASSISTANT"]
    assert shown == committed == texts
    users = await page.locator('#transcript .entry[data-role="USER"] .text').all_text_contents()
    assert users == texts
    assert await page.locator("#live").is_hidden()


async def test_no_response_body_holds_a_runtime_address_or_token(
    console: ConsoleFactory, page: Any
) -> None:
    c = await console()
    _, remote_id = await c.runtime_ids()
    wid = await c.create_worker(remote_id, "slow")
    seen: list[str] = []

    async def record(response: Any) -> None:
        if "text/event-stream" in (response.headers.get("content-type") or ""):
            return  # read below through httpx (a stream has no end to wait for)
        with contextlib.suppress(Exception):  # a body dropped by a navigation: nothing to read
            seen.append(await response.text())

    page.on("response", lambda r: asyncio.ensure_future(record(r)))
    await open_worker(page, c, remote_id, wid)
    await page.fill("#input", "hello there")
    await page.press("#input", "Enter")
    await eventually(lambda: _has_assistant(page, "hello there"), timeout=BOUND)
    for path in (
        "/healthz",
        "/api/runtimes",
        "/api/workers",
        f"/api/runtimes/{remote_id}/workers/{wid}",
        f"/api/runtimes/{remote_id}/workers/{wid}/transcript",
        f"/api/runtimes/{remote_id}/workers/{wid}/usage",
        "/api/runtimes/nope/workers/nope",
    ):
        await c.call("GET", path)
    async with c.http.stream(
        "GET", f"/api/runtimes/{remote_id}/workers/{wid}/events?after_seq=0"
    ) as resp:
        body = b""
        async for chunk in resp.aiter_bytes():
            body += chunk
            if b"run_finished" in body:
                break
        c.bodies.append(body.decode())
    everything = "\n".join(seen + c.bodies)
    assert "hello there" in everything  # the check reads real bodies
    for secret in (c.remote.target, f":{c.remote.port}", REMOTE_TOKEN, str(c.remote_data)):
        assert secret not in everything


async def _set_hidden(page: Any, hidden: bool) -> None:
    # Headless chromium reports every tab visible: emulate the tab being hidden / shown again.
    await page.evaluate(
        """(hidden) => {
            Object.defineProperty(document, "hidden", {value: hidden, configurable: true});
            Object.defineProperty(document, "visibilityState",
                {value: hidden ? "hidden" : "visible", configurable: true});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


async def test_a_hidden_tab_closes_its_stream_and_resumes_from_its_last_id(
    console: ConsoleFactory, page: Any
) -> None:
    c = await console(delay_ms=50)
    _, remote_id = await c.runtime_ids()
    wid = await c.create_worker(remote_id, "slow")
    await open_worker(page, c, remote_id, wid)

    async def streams() -> int:
        return int((await c.call("GET", "/healthz")).json()["open_streams"])

    await eventually(lambda: _eq(streams(), 1), timeout=BOUND)
    await _set_hidden(page, True)
    await eventually(lambda: _eq(streams(), 0), timeout=BOUND)  # the connection is given back
    text = "said while the tab was hidden"
    run = await c.send(remote_id, wid, text)
    await eventually(lambda: _run_done(c, remote_id, run["run_id"]), timeout=BOUND)
    assert text not in await assistant_texts(page)
    await _set_hidden(page, False)
    await eventually(lambda: _has_assistant(page, text), timeout=BOUND)
    assert (await assistant_texts(page)).count(text) == 1
    users = await page.locator('#transcript .entry[data-role="USER"] .text').all_text_contents()
    assert users.count(text) == 1
    await eventually(lambda: _eq(streams(), 1), timeout=BOUND)


async def _eq(value: Any, expected: int) -> bool:
    return bool(await value == expected)


async def _run_done(c: Console, rid: str, run_id: str) -> bool:
    run = (await c.call("GET", f"/api/runtimes/{rid}/runs/{run_id}")).json()["run"]
    return bool(run["state"] == "COMPLETED")
