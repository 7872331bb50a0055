"""X-Forwarded-For is believed only from the proxies the Backend's config names
(``trusted_proxies``; none by default), over real sockets against a real ``worker-backend serve``.

uvicorn believes proxy headers from 127.0.0.1 by default, and the Backend's per-address bounds
exempted that address as "the trusted local proxy": any local process could send each request
with another ``X-Forwarded-For`` and count as any number of clients, getting around the
per-address stream cap of an open console (and the per-address connection cap altogether).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import httpx
from backend_serving import CSRF, BackendProcess, start_backend

BOUND = 30.0
BASE = 'store = "memory"\nheartbeat_s = 0.2\n[companion]\nprofile = "echo"\n'
CAPS = "max_streams = 8\nmax_streams_per_client = 2\n"


def _client(backend: BackendProcess, source: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=source)
    return httpx.AsyncClient(base_url=backend.url, headers=CSRF, timeout=BOUND, transport=transport)


async def _events_path(http: httpx.AsyncClient) -> str:
    first = (await http.get("/api/workers")).json()["workers"][0]
    return f"/api/runtimes/{first['runtime_id']}/workers/{first['worker']['worker_id']}/events"


def _forged(n: int) -> dict[str, str]:
    return {"x-forwarded-for": f"203.0.113.{n}"}


_READERS: list[object] = []  # kept: a dropped reader closes its response


async def _stream_status(
    stack: contextlib.AsyncExitStack, http: httpx.AsyncClient, path: str, n: int
) -> int:
    """Open one event stream claiming to be client ``n``; kept open (on ``stack``) if accepted."""
    resp = await stack.enter_async_context(http.stream("GET", path, headers=_forged(n)))
    if resp.status_code == 200:
        reader = resp.aiter_bytes()
        _READERS.append(reader)
        async with asyncio.timeout(BOUND):
            assert b"retry:" in await anext(reader)  # open on the server
    else:
        await resp.aread()
    return resp.status_code


async def test_a_forged_forwarded_for_does_not_get_around_the_stream_cap(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, CAPS + BASE)
    try:
        async with _client(backend) as local, contextlib.AsyncExitStack() as stack:
            path = await _events_path(local)
            statuses = [await _stream_status(stack, local, path, n) for n in range(4)]
            # before: [200, 200, 200, 200] — each forged address counted as another client
            assert statuses == [200, 200, 429, 429], statuses
    finally:
        _READERS.clear()
        backend.terminate()


async def _half_request(backend: BackendProcess, source: str) -> asyncio.StreamWriter:
    _, writer = await asyncio.open_connection("127.0.0.1", backend.port, local_addr=(source, 0))
    writer.write(b"GET /healthz HTTP/1.1\r\n")
    await writer.drain()
    return writer


async def _answer(backend: BackendProcess, source: str) -> bytes:
    reader, writer = await asyncio.open_connection(
        "127.0.0.1", backend.port, local_addr=(source, 0)
    )
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        return await asyncio.wait_for(reader.read(), BOUND)
    finally:
        writer.close()


async def test_the_local_address_is_counted_per_address_like_any_other(tmp_path: Path) -> None:
    config = "max_streams_per_client = 1\nmax_connections_per_client = 3\n"
    config += "request_timeout_s = 600.0\n" + BASE
    backend = await start_backend(tmp_path, config)
    held = []
    try:
        for _ in range(3):
            held.append(await _half_request(backend, "127.0.0.1"))
        # before: 200 (127.0.0.1 was exempt as a trusted proxy)
        answer = await _answer(backend, "127.0.0.1")
        assert answer.startswith(b"HTTP/1.1 503"), answer
    finally:
        for writer in held:
            writer.close()
        backend.terminate()


async def test_a_configured_proxy_is_believed_and_no_one_else(tmp_path: Path) -> None:
    config = 'trusted_proxies = ["127.0.0.1"]\n' + CAPS + BASE
    backend = await start_backend(tmp_path, config)
    try:
        async with (
            _client(backend) as proxy,
            _client(backend, "127.0.0.2") as other,
            contextlib.AsyncExitStack() as stack,
        ):
            path = await _events_path(proxy)
            # through the proxy: each forwarded client has its own two streams
            statuses = [await _stream_status(stack, proxy, path, n % 2) for n in range(4)]
            assert statuses == [200, 200, 200, 200], statuses
            assert (await proxy.get("/healthz")).json()["stream_clients"] == 2
            # from anyone else the header is ignored: counted by its own address
            statuses = [await _stream_status(stack, other, path, 10 + n) for n in range(3)]
            assert statuses == [200, 200, 429], statuses
    finally:
        _READERS.clear()
        backend.terminate()
