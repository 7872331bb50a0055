"""The Backend's HTTP server bounds slow and idle clients and its open connections
(``backend.http_limits``), over real sockets against a real ``worker-backend serve``.

Before, uvicorn's h11 server armed no timer until a first response: a connection that sent
nothing, or sent its headers one byte at a time (slowloris), or trickled a body, was held forever;
connections were not bounded at all; a client that stopped reading an event stream held its socket
and stream slot for good.
"""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from backend_serving import BackendProcess, eventually, start_backend

from backend.http_limits import HttpLimits, bounded_protocol

BOUND = 20.0  # seconds: safety nets only (every bound under test is 1 s or less)
CONFIG = 'store = "memory"\n[companion]\nprofile = "echo"\n'


async def _open(backend: BackendProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection("127.0.0.1", backend.port)


async def _trickle_until_closed(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    """Send ``data`` one byte every 0.1 s (then keep sending header bytes) until the server
    closes the connection; what it answered. Fails after ``BOUND`` seconds."""
    deadline = time.monotonic() + BOUND
    payload = iter(data + b"x" * 100_000)
    while time.monotonic() < deadline:
        try:
            writer.write(bytes([next(payload)]))
            await writer.drain()
        except ConnectionError:
            break
        try:
            answer = await asyncio.wait_for(reader.read(), 0.1)
        except TimeoutError:
            continue
        except ConnectionError:
            return b""
        return answer
    else:
        raise AssertionError(f"the server still held the trickling connection after {BOUND} s")
    return await asyncio.wait_for(reader.read(), BOUND)


async def test_slow_and_idle_requests_are_cut_but_streams_are_not(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, f"request_timeout_s = 1.0\nheartbeat_s = 0.2\n{CONFIG}")
    try:
        # slowloris: headers one byte at a time
        reader, writer = await _open(backend)
        answer = await _trickle_until_closed(reader, writer, b"GET /healthz HTTP/1.1\r\nX-A: ")
        # the 408, or nothing: a byte sent after the server closed resets the connection, and
        # the reset may destroy the 408 unread (on a loaded machine it does). Either way: cut.
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), answer
        writer.close()

        # a body that trickles (the headers came at once)
        reader, writer = await _open(backend)
        writer.write(
            b"POST /api/login HTTP/1.1\r\nHost: 127.0.0.1\r\nx-worker-console: 1\r\n"
            b"content-type: application/json\r\ncontent-length: 100000\r\n\r\n"
        )
        answer = await _trickle_until_closed(reader, writer, b'{"token": "')
        assert b"200 OK" not in answer
        writer.close()

        # a connection that sends nothing at all
        reader, writer = await _open(backend)
        answer = await asyncio.wait_for(reader.read(), BOUND)
        assert answer.startswith(b"HTTP/1.1 408"), answer
        writer.close()

        # a request that arrives in time is served, and an event stream (the request is in: the
        # application has it) lasts well past the request timeout
        async with httpx.AsyncClient(base_url=backend.url, timeout=BOUND) as http:
            assert (await http.get("/healthz")).status_code == 200
            found = (await http.get("/api/workers")).json()["workers"]
            rid, wid = found[0]["runtime_id"], found[0]["worker"]["worker_id"]
            path = f"/api/runtimes/{rid}/workers/{wid}/events"
            async with http.stream("GET", path) as stream:
                assert stream.status_code == 200
                started = time.monotonic()
                chunks = stream.aiter_raw()
                while time.monotonic() - started < 3.0:  # three request timeouts
                    assert await asyncio.wait_for(anext(chunks), BOUND)
    finally:
        backend.terminate()


async def test_connections_past_the_bound_are_refused_at_once(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, f"max_streams = 3\nmax_connections = 4\n{CONFIG}")
    try:
        # one connection that has sent half a request (the server holds it, waiting)...
        _, half = await _open(backend)
        half.write(b"GET /healthz HTTP/1.1\r\n")
        await half.drain()
        async with httpx.AsyncClient(base_url=backend.url, timeout=BOUND) as http:
            found = (await http.get("/api/workers")).json()["workers"]
            rid, wid = found[0]["runtime_id"], found[0]["worker"]["worker_id"]
        path = f"{backend.url}/api/runtimes/{rid}/workers/{wid}/events"
        # ...and three event streams, each on its own connection, opened after it (so it was
        # accepted first): four open connections
        clients = [httpx.AsyncClient(timeout=BOUND) for _ in range(3)]
        streams, readers = [], []
        for client in clients:
            cm = client.stream("GET", path)
            resp = await cm.__aenter__()
            assert resp.status_code == 200
            # kept: a dropped iterator closes the response when it is collected
            readers.append(resp.aiter_raw())
            await asyncio.wait_for(anext(readers[-1]), BOUND)  # open on the server
            streams.append(cm)
        # a fifth connection: 503 at once, closed
        reader, writer = await _open(backend)
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = await asyncio.wait_for(reader.read(), BOUND)
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert b"too many open connections" in answer
        writer.close()
        # closing one frees its place
        await streams.pop().__aexit__(None, None, None)
        await clients.pop().aclose()
        async with httpx.AsyncClient(base_url=backend.url, timeout=BOUND) as http:
            deadline = time.monotonic() + BOUND
            while (status := await _status(http)) != 200:
                assert time.monotonic() < deadline, status
                await asyncio.sleep(0.05)
        for cm, client in zip(streams, clients, strict=True):
            await cm.__aexit__(None, None, None)
            await client.aclose()
        half.close()
    finally:
        backend.terminate()


async def _status(http: httpx.AsyncClient) -> int:
    try:
        return (await http.get("/healthz")).status_code
    except httpx.HTTPError:
        return 0


async def test_a_client_that_stops_reading_is_cut() -> None:
    # the bounded protocol under uvicorn on a real socket, with an app that streams without end
    # (as an event stream does): a client that reads nothing is aborted once the server's
    # writes have been blocked for send_timeout_s, and the app sees the disconnect
    disconnected = asyncio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            disconnected.set()

        watcher = asyncio.ensure_future(watch())
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = b"x" * 65536
        while not disconnected.is_set():  # what an event stream does (backend._events)
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await asyncio.sleep(0)
        await watcher

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    limits = HttpLimits(max_connections=8, request_timeout_s=5.0, send_timeout_s=0.5)
    config = uvicorn.Config(app, http=bounded_protocol(limits), lifespan="off", log_level="error")
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    client = socket.socket()
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await eventually(lambda: server.started, timeout=BOUND)
        client.connect(("127.0.0.1", port))
        client.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        # never read: without the bound the app's send() waits forever
        await asyncio.wait_for(disconnected.wait(), BOUND)
    finally:
        client.close()
        server.should_exit = True
        await asyncio.wait_for(serving, BOUND)


async def test_sigterm_stops_a_backend_with_an_event_stream_open(tmp_path: Path) -> None:
    # uvicorn waits for every response to end before it stops: an open console tab's event
    # stream never does, so SIGTERM (Ctrl-C, a pod's stop) hung until SIGKILL
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=BOUND) as http:
            found = (await http.get("/api/workers")).json()["workers"]
            rid, wid = found[0]["runtime_id"], found[0]["worker"]["worker_id"]
            path = f"/api/runtimes/{rid}/workers/{wid}/events"
            async with http.stream("GET", path) as stream:
                chunks = stream.aiter_raw()
                await asyncio.wait_for(anext(chunks), BOUND)  # open on the server
                started = time.monotonic()
                code = await asyncio.to_thread(backend.terminate)  # fails past START_TIMEOUT
                assert code == -15  # uvicorn's graceful exit re-raises the SIGTERM
                # well inside the grace period for ordinary requests: the stream was cut at once
                assert time.monotonic() - started < BOUND
    finally:
        if backend.proc.poll() is None:
            backend.proc.kill()


async def test_unparsable_requests_do_not_flood_the_log(tmp_path: Path) -> None:
    # uvicorn logged a WARNING per request it could not parse: anyone who can connect could
    # fill the Backend's log. Now one line per minute, counting the rest.
    backend = await start_backend(tmp_path, CONFIG)
    try:
        for _ in range(30):
            reader, writer = await _open(backend)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), BOUND)
            assert answer.startswith(b"HTTP/1.1 400"), answer
            writer.close()
    finally:
        backend.terminate()
    lines = [ln for ln in backend.stderr().splitlines() if "Invalid HTTP request" in ln]
    assert 1 <= len(lines) <= 2, lines
