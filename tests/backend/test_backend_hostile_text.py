"""Hostile text through the console's HTTP API, over real HTTP to a real Backend subprocess (its
embedded runtime on SQLite, and a remote runtime subprocess).

JSON lets a body carry a lone UTF-16 surrogate (``"\\ud800"``), which Python decodes into a
``str`` that UTF-8 cannot encode. Before, such an input on the embedded runtime made its SQLite
writer fail: STORE_FAILURE for the whole runtime (the answer even named the SQLite file's host
path), and another worker's run in flight ended INTERRUPTED; such a display name was stored and
then every ``GET /api/workers`` answered 500, for everyone, until the worker was deleted; on the
remote runtime the client's bare ``UnicodeEncodeError`` was a 500. A surrogate in the login token
and a non-ASCII session cookie were 500s with a traceback in the log (an anonymous caller could
fill it). Now each is a clear 400 / 401 and nothing else is harmed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from backend_serving import Console, ConsoleFactory, eventually

from runtime_server.model import Event, Worker, WorkerCreated, WorkerState
from runtime_server.store import PutWorker, SqliteStore

BOUND = 30.0
JSON = {"content-type": "application/json"}
WORKER = "01a1fea1-0000-7000-8000-0000000000a1"


def error_of(resp: httpx.Response) -> dict[str, Any]:
    body = resp.json()
    assert set(body) == {"error"}, body
    err: dict[str, Any] = body["error"]
    return err


async def _post_raw(c: Console, path: str, body: bytes) -> httpx.Response:
    # raw bytes: the JSON escape \ud800 travels as six ASCII characters, as a browser sends it
    return await c.call("POST", path, content=body, headers=JSON)


async def test_a_surrogate_in_input_or_a_name_is_a_400_and_harms_nothing(
    console: ConsoleFactory,
) -> None:
    c = await console(delay_ms=50)
    embedded_id, remote_id = await c.runtime_ids()
    busy = await c.create_worker(embedded_id, "echo-slow")
    run = await c.send(embedded_id, busy, "one two three four five six seven eight nine ten")

    for rid in (embedded_id, remote_id):
        victim = await c.create_worker(rid, "echo")
        resp = await _post_raw(
            c, f"/api/runtimes/{rid}/workers/{victim}/input", b'{"text": "boom \\ud800"}'
        )
        assert resp.status_code == 400, resp.text
        err = error_of(resp)
        assert (err["reason"], err["metadata"]) == ("INVALID_ARGUMENT", {"field": "text"})
        named = await _post_raw(
            c,
            "/api/workers",
            b'{"runtime_id": "'
            + rid.encode()
            + b'", "profile": "echo", "display_name": "x\\udc80"}',
        )
        assert named.status_code == 400, named.text
        assert error_of(named)["metadata"] == {"field": "display_name"}
        # the runtime still takes input
        assert (await c.send(rid, victim, "still fine"))["state"] in ("QUEUED", "RUNNING")

    listed = await c.call("GET", "/api/workers")
    assert listed.status_code == 200
    assert "\\udc80" not in listed.text

    async def completed() -> bool:
        resp = await c.call("GET", f"/api/runtimes/{embedded_id}/runs/{run['run_id']}")
        state: str = resp.json()["run"]["state"]
        assert state in ("QUEUED", "RUNNING", "COMPLETED"), state  # never INTERRUPTED
        return state == "COMPLETED"

    await eventually(completed, timeout=BOUND)
    assert all("sqlite3" not in body for body in c.bodies)  # no host path reached the browser


async def test_odd_login_tokens_and_cookies_are_refused_not_crashed(
    console: ConsoleFactory,
) -> None:
    c = await console(token="console-tok-9a8b7c")
    login = await _post_raw(c, "/api/login", b'{"token": "\\ud800"}')
    assert login.status_code == 401
    assert "set-cookie" not in login.headers
    odd = {b"cookie": b"worker_console_session=\xe9\xe9"}  # latin-1 bytes, as a client may send
    session = await c.http.get("/api/session", headers=odd)
    assert session.status_code == 200
    assert session.json() == {"auth_required": True, "authenticated": False}
    assert (await c.http.get("/api/workers", headers=odd)).status_code == 401
    await asyncio.sleep(0)
    assert "Traceback" not in c.backend.stderr()


async def _legacy_store(path: Path) -> str:
    """A store as an earlier version could leave it: a worker whose display name holds a lone
    surrogate (an embedded caller's request was kept as-is then). Returns the worker id."""
    path.parent.mkdir(parents=True)
    store = SqliteStore(path)
    state = await store.open("01a1fea1-0000-7000-8000-00000000abcd")
    assert state.last_seq == 0
    worker = Worker(
        worker_id=WORKER,
        runtime_id="01a1fea1-0000-7000-8000-00000000abcd",
        state=WorkerState.IDLE,
        profile="echo",
        display_name="legacy \udc80 name",
        labels={},
        created_at=1_700_000_000.0,
    )
    store.write([Event(1, 1_700_000_000.0, WORKER, "", WorkerCreated(worker))], [PutWorker(worker)])
    await store.flush()
    await store.close()
    return WORKER


async def test_text_an_earlier_version_stored_is_shown_not_a_500(
    console: ConsoleFactory, tmp_path: Path
) -> None:
    await _legacy_store(tmp_path / "backend-data" / "runtime.sqlite3")
    c = await console()
    embedded_id, _ = await c.runtime_ids()

    async def listed() -> bool:
        resp = await c.call("GET", "/api/workers")
        assert resp.status_code == 200, resp.text
        return any(w["worker"]["worker_id"] == WORKER for w in resp.json()["workers"])

    await eventually(listed, timeout=BOUND)
    detail = await c.call("GET", f"/api/runtimes/{embedded_id}/workers/{WORKER}")
    assert detail.status_code == 200
    assert detail.json()["worker"]["display_name"] == "legacy \ufffd name"  # as gRPC sends it

    path = f"/api/runtimes/{embedded_id}/workers/{WORKER}/events?after_seq=0"
    async with c.http.stream("GET", path) as resp:
        assert resp.status_code == 200
        seen = b""
        async with asyncio.timeout(BOUND):
            async for chunk in resp.aiter_bytes():
                seen += chunk
                if b"worker_created" in seen and b"\n\n" in seen.split(b"worker_created", 1)[1]:
                    break
    assert "legacy \ufffd name" in seen.decode("utf-8")
