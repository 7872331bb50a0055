"""One client cannot take every console stream or every connection of the Backend, over real
sockets against a real ``worker-backend serve``.

Before, the 64 stream slots and the connection bound were shared by everyone: one logged-in
session (or, on an open console, one address) could open all of them, and every other browser
got 429 (or 503) until it let go. Now each stream also counts against its client — the login
session when the console has a token, else the address — and each connection against its peer
address (the proxies listed in trusted_proxies, none by default, are not counted per address).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from backend_serving import CSRF, BackendProcess, start_backend

BOUND = 30.0
TOKEN = "console-tok-3f9a2c7e1b"
BASE = 'store = "memory"\nheartbeat_s = 0.2\n[companion]\nprofile = "echo"\n'


def _client(backend: BackendProcess, source: str = "127.0.0.1") -> httpx.AsyncClient:
    # a client from another loopback address stands for another host
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=backend.url, headers=CSRF, timeout=BOUND, transport=transport)


async def _events_path(http: httpx.AsyncClient) -> str:
    first = (await http.get("/api/workers")).json()["workers"][0]
    return f"/api/runtimes/{first['runtime_id']}/workers/{first['worker']['worker_id']}/events"


async def _open_stream(
    stack: contextlib.AsyncExitStack, http: httpx.AsyncClient, path: str
) -> AsyncIterator[bytes]:
    resp = await stack.enter_async_context(http.stream("GET", path))
    assert resp.status_code == 200, await resp.aread()
    reader = resp.aiter_bytes()
    async with asyncio.timeout(BOUND):
        assert b"retry:" in await anext(reader)  # open on the server
    return reader


async def _refused(http: httpx.AsyncClient, path: str) -> httpx.Response:
    """The answer to one more stream, which must be a refusal (a stream would never end)."""
    async with http.stream("GET", path) as resp:
        assert resp.status_code == 429, resp.status_code
        await resp.aread()
    return resp


async def test_one_session_cannot_take_every_stream(tmp_path: Path) -> None:
    config = f'token_env = "CONSOLE_TOKEN"\nmax_streams = 6\nmax_streams_per_client = 2\n{BASE}'
    backend = await start_backend(tmp_path, config, {"CONSOLE_TOKEN": TOKEN})
    try:
        async with _client(backend) as first, _client(backend) as second:
            for http in (first, second):  # two logins: two sessions, from one address
                assert (await http.post("/api/login", json={"token": TOKEN})).status_code == 204
            path = await _events_path(first)
            readers = []  # kept: a dropped reader closes its response
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(2):
                    readers.append(await _open_stream(stack, first, path))
                refused = await _refused(first, path)
                error = refused.json()["error"]
                assert error["reason"] == "TOO_MANY_CLIENT_STREAMS"
                assert error["metadata"] == {"limit": "2", "per": "session"}
                assert refused.headers["retry-after"].isdigit()
                # the other session (same address: people behind one NAT) still gets its own
                readers.append(await _open_stream(stack, second, path))
                health = (await first.get("/healthz")).json()
                assert health["open_streams"] == 3
                assert health["stream_clients"] == 2
                assert health["limits"]["max_streams_per_client"] == 2
                assert health["limits"]["max_streams"] == 6
    finally:
        backend.terminate()


async def test_one_address_cannot_take_every_stream_of_an_open_console(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, f"max_streams = 6\nmax_streams_per_client = 2\n{BASE}")
    try:
        async with _client(backend, "127.0.0.2") as hog, _client(backend, "127.0.0.3") as other:
            path = await _events_path(hog)
            readers = []
            async with contextlib.AsyncExitStack() as stack:
                for _ in range(2):
                    readers.append(await _open_stream(stack, hog, path))
                refused = await _refused(hog, path)
                assert refused.json()["error"]["metadata"] == {"limit": "2", "per": "address"}
                readers.append(await _open_stream(stack, other, path))
            # closing them frees the address's slots (none is leaked)

            async def freed() -> bool:
                return bool((await other.get("/healthz")).json()["stream_clients"] == 0)

            deadline = asyncio.get_running_loop().time() + BOUND
            while not await freed():
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            async with contextlib.AsyncExitStack() as stack:
                readers.append(await _open_stream(stack, hog, path))
    finally:
        backend.terminate()


async def _half_request(
    backend: BackendProcess, source: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection from ``source`` that has sent half a request: the server holds it."""
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", backend.port, local_addr=(source, 0)
    )
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    await writer.drain()
    return reader, writer


async def _answer(backend: BackendProcess, source: str) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", backend.port, local_addr=(source, 0)
    )
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(), BOUND)
    finally:
        writer.close()


async def test_one_address_cannot_take_every_connection(tmp_path: Path) -> None:
    # the held half-requests must outlast the test, however loaded the machine
    config = "max_streams_per_client = 1\nmax_connections_per_client = 3\n"
    config += f"request_timeout_s = 600.0\n{BASE}"
    backend = await start_backend(tmp_path, config)
    held = []
    try:
        for _ in range(3):
            held.append(await _half_request(backend, "127.0.0.2"))
        answer = await _answer(backend, "127.0.0.2")
        assert answer.startswith(b"HTTP/1.1 503"), answer
        assert answer.endswith(b"too many open connections from your address")
        # other addresses are served
        assert (await _answer(backend, "127.0.0.3")).startswith(b"HTTP/1.1 200")
        assert (await _answer(backend, "127.0.0.1")).startswith(b"HTTP/1.1 200")
        # a closed connection gives its place back
        held.pop()[1].close()
        deadline = asyncio.get_running_loop().time() + BOUND
        while not (await _answer(backend, "127.0.0.2")).startswith(b"HTTP/1.1 200"):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)
        async with _client(backend) as http:
            limits = (await http.get("/healthz")).json()["limits"]
        assert limits["max_connections_per_client"] == 3
    finally:
        for _, writer in held:
            writer.close()
        backend.terminate()
