"""The Backend's HTTP API over real HTTP (httpx, no browser): a real Backend subprocess, its
embedded runtime on SQLite and a real remote runtime subprocess. Bad input gets a clear error
with the right status and the field named; the security layer holds."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
from backend_serving import CSRF, REMOTE_TOKEN, Console, ConsoleFactory, eventually

BOUND = 30.0


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"reason", "message", "metadata"}
    err: dict[str, Any] = body["error"]
    return err


async def _worker(c: Console) -> tuple[str, str]:
    _, remote_id = await c.runtime_ids()
    return remote_id, await c.create_worker(remote_id, "slow")


async def test_bad_inputs_are_clear_errors(console: ConsoleFactory) -> None:
    c = await console(delay_ms=20)
    rid, wid = await _worker(c)
    base = f"/api/runtimes/{rid}/workers/{wid}"

    empty = await c.call("POST", base + "/input", json={"text": "   "})
    assert empty.status_code == 400
    assert error_of(empty)["metadata"]["field"] == "text"

    oversize = await c.call("POST", base + "/input", json={"text": "x" * 2001})
    assert oversize.status_code == 400
    assert error_of(oversize)["metadata"]["field"] == "text"

    policy = await c.call("POST", base + "/input", json={"text": "hi", "busy_policy": "LATER"})
    assert policy.status_code == 400
    assert error_of(policy)["metadata"]["field"] == "busy_policy"

    not_json = await c.call(
        "POST", base + "/input", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert not_json.status_code == 400
    assert error_of(not_json)["metadata"]["field"] == "body"
    # 10 KB nested past Python's recursion limit: json.loads raised RecursionError (a 500)
    deep = await c.call(
        "POST",
        base + "/input",
        content=b"[" * 5000 + b"]" * 5000,
        headers={"content-type": "application/json"},
    )
    assert deep.status_code == 400
    assert error_of(deep)["metadata"]["field"] == "body"

    unknown_runtime = await c.call("GET", "/api/runtimes/no-such-runtime/workers/" + wid)
    assert unknown_runtime.status_code == 404
    assert error_of(unknown_runtime)["reason"] == "RUNTIME_NOT_FOUND"

    unknown_worker = await c.call(
        "GET", f"/api/runtimes/{rid}/workers/0190d5a4-0000-7000-8000-000000000000"
    )
    assert unknown_worker.status_code == 404
    assert error_of(unknown_worker)["reason"] == "WORKER_NOT_FOUND"

    no_profile = await c.call("POST", "/api/workers", json={"runtime_id": rid, "profile": "nope"})
    assert no_profile.status_code == 400
    assert error_of(no_profile)["metadata"]["field"] == "profile"

    bad_cursor = await c.call("GET", base + "/events", headers={"last-event-id": "12abc"})
    assert bad_cursor.status_code == 400
    assert error_of(bad_cursor)["metadata"]["field"] == "Last-Event-ID"
    bad_query = await c.call("GET", base + "/events?after_seq=-4")
    assert bad_query.status_code == 400
    assert error_of(bad_query)["metadata"]["field"] == "after_seq"


async def test_cancelling_a_finished_run_returns_it_unchanged(console: ConsoleFactory) -> None:
    c = await console(delay_ms=5)
    rid, wid = await _worker(c)
    run = await c.send(rid, wid, "short one")

    async def done() -> bool:
        got = (await c.call("GET", f"/api/runtimes/{rid}/runs/{run['run_id']}")).json()
        return bool(got["run"]["state"] == "COMPLETED")

    await eventually(done, timeout=BOUND)
    resp = await c.call("POST", f"/api/runtimes/{rid}/runs/{run['run_id']}/cancel")
    assert resp.status_code == 200
    assert resp.json()["run"]["state"] == "COMPLETED"
    assert resp.json()["cancelled"] is False
    missing = await c.call(
        "POST", f"/api/runtimes/{rid}/runs/0190d5a4-0000-7000-8000-00000000beef/cancel"
    )
    assert missing.status_code == 404
    assert error_of(missing)["reason"] == "RUN_NOT_FOUND"


async def test_busy_is_409_with_the_active_run(console: ConsoleFactory) -> None:
    c = await console(delay_ms=300)
    rid, wid = await _worker(c)
    first = await c.send(rid, wid, " ".join(["word"] * 20))
    busy = await c.call("POST", f"/api/runtimes/{rid}/workers/{wid}/input", json={"text": "again"})
    assert busy.status_code == 409
    err = error_of(busy)
    assert err["reason"] == "WORKER_BUSY"
    assert err["metadata"]["active_run_id"] == first["run_id"]
    cancel = await c.call("POST", f"/api/runtimes/{rid}/runs/{first['run_id']}/cancel")
    assert cancel.json()["run"]["state"] == "CANCELLED"
    assert cancel.json()["cancelled"] is True


async def test_an_expired_cursor_sends_reset_and_the_stream_goes_on(
    console: ConsoleFactory,
) -> None:
    c = await console(delay_ms=1, retention=20)
    rid, wid = await _worker(c)
    direct = c.remote.client(token=REMOTE_TOKEN)  # to see the log's bounds, not the path tested
    sent = 0

    async def trimmed() -> bool:
        nonlocal sent
        run = await c.send(rid, wid, f"message {sent} " + "w " * 5)
        sent += 1
        await direct.wait_run(run["run_id"], timeout=BOUND)
        return (await direct.get_runtime()).oldest_seq > 2  # retention runs now and then

    await eventually(trimmed, timeout=BOUND, interval=0.3)
    async with c.http.stream(
        "GET", f"/api/runtimes/{rid}/workers/{wid}/events?after_seq=1", headers=CSRF
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        text = ""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(BOUND):
                async for chunk in resp.aiter_text():
                    text += chunk
                    if "event: reset" in text and text.endswith("\n\n"):
                        break
    assert "event: reset" in text, text
    frame = text.split("event: reset\n", 1)[1].split("\n\n", 1)[0]
    assert frame.startswith("id: ")
    assert '"oldest_seq"' in frame


async def _finished(c: Console, rid: str, run_id: str) -> bool:
    got = (await c.call("GET", f"/api/runtimes/{rid}/runs/{run_id}")).json()
    return bool(got["run"]["state"] in ("COMPLETED", "FAILED", "CANCELLED"))


async def test_security_headers_csrf_and_health(console: ConsoleFactory) -> None:
    c = await console()
    page = await c.http.get("/")
    assert page.status_code == 200
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    assert '<script type="module" src=' in page.text
    assert "<script>" not in page.text  # no inline script: only <script src=...>
    # A state-changing request without the custom header (what a cross-site form sends): refused.
    rid, wid = await _worker(c)
    forged = await c.http.post(f"/api/runtimes/{rid}/workers/{wid}/input", json={"text": "hi"})
    assert forged.status_code == 403
    assert error_of(forged)["reason"] == "CSRF_HEADER_MISSING"
    health = await c.http.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    # A remote runtime going down never fails the Backend's own health check.
    c.remote.kill9()
    await eventually(lambda: _remote_unreachable(c), timeout=BOUND)
    health = await c.http.get("/healthz")
    assert health.status_code == 200
    gone = await c.call("POST", f"/api/runtimes/{rid}/workers/{wid}/input", json={"text": "hi"})
    assert gone.status_code == 503
    assert gone.headers["retry-after"].isdigit()


async def _remote_unreachable(c: Console) -> bool:
    runtimes = (await c.call("GET", "/api/runtimes")).json()["runtimes"]
    return any(r["kind"] == "remote" and r["state"] == "UNREACHABLE" for r in runtimes)


async def test_with_a_token_the_api_needs_the_login_cookie(console: ConsoleFactory) -> None:
    token = "console-tok-5c2b9e"
    c = await console(token=token)
    assert (await c.call("GET", "/api/workers")).status_code == 401
    assert (await c.http.get("/healthz")).status_code == 200
    assert (await c.http.get("/")).status_code == 200  # the page itself shows the login form
    session = (await c.call("GET", "/api/session")).json()
    assert session == {"auth_required": True, "authenticated": False}
    wrong = await c.call("POST", "/api/login", json={"token": "guess"})
    assert wrong.status_code == 401
    assert "set-cookie" not in wrong.headers
    ok = await c.call("POST", "/api/login", json={"token": token})
    assert ok.status_code == 204
    cookie = ok.headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie
    assert token not in ok.headers["set-cookie"]
    # httpx keeps the cookie: the API answers now
    assert (await c.call("GET", "/api/workers")).status_code == 200
    assert (await c.call("GET", "/api/session")).json()["authenticated"] is True


async def test_a_client_that_leaves_ends_the_upstream_subscription(console: ConsoleFactory) -> None:
    c = await console()
    rid, wid = await _worker(c)
    direct = c.remote.client(token=REMOTE_TOKEN)  # reads the runtime's own subscriber count

    async def subscribers() -> int:
        return (await direct.get_runtime()).subscribers

    before = await subscribers()
    async with c.http.stream(
        "GET", f"/api/runtimes/{rid}/workers/{wid}/events", headers=CSRF
    ) as resp:
        assert resp.status_code == 200
        reader = resp.aiter_bytes()
        async with asyncio.timeout(BOUND):
            await anext(reader)
        await eventually(lambda: _at_least(subscribers(), before + 1), timeout=BOUND)
    # the HTTP stream is closed: the Backend cancels its subscription on the runtime
    await eventually(lambda: _at_most(subscribers(), before), timeout=BOUND)


async def _at_least(value: Any, n: int) -> bool:
    return bool(await value >= n)


async def _at_most(value: Any, n: int) -> bool:
    return bool(await value <= n)
