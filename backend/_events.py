"""``GET /api/runtimes/{runtime_id}/workers/{worker_id}/events``: one worker's events as SSE.

The upstream is the registry's subscription for that runtime and worker, which stays open while
the registry reconnects the runtime and resumes after the last seq it delivered (across the
runtime's restarts). What comes out (framing in ``backend.sse``):

- each runtime event as ``id: seq`` + JSON (heartbeats of the runtime are not forwarded: the
  Backend sends its own comment lines, timed for the browser connection);
- ``event: runtime`` first with the runtime's current health, then at every change;
- ``event: reset`` when the cursor aged out of the runtime's retention;
- ``event: end`` when the worker was deleted, the runtime's identity changed, the runtime
  refused the stream (the error is in the data), or the login session the stream was opened
  with ended (``SESSION_ENDED``: logout, or pushed out by newer logins; checked at every write,
  so within a heartbeat): the page stops instead of reconnecting.

The response is a small ASGI callable, not a ``StreamingResponse``: it watches for the browser's
``http.disconnect`` while it writes, so a closed tab cancels the upstream subscription at once
rather than at the next failed write.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from backend._routes import api, backend_of, path_id
from backend.errors import from_client_error, scrub
from backend.security import COOKIE
from backend.sse import Frame, encode, parse_cursor, with_heartbeats
from backend.views import EventFrames
from runtime_client import CursorReset, RegistryEvent, RuntimeRegistry, RuntimeStateChanged
from runtime_client.errors import RuntimeIdentityChanged, RuntimeServiceError, StatusCode

__all__ = ["worker_events"]


class EventStream(Response):
    media_type = "text/event-stream"

    def __init__(
        self,
        body: AsyncIterator[bytes],
        release: Callable[[], None],
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        super().__init__(None, headers={"x-accel-buffering": "no"}, media_type=self.media_type)
        # a stream has no length: chunked transfer (Response would announce an empty body)
        self.raw_headers = [(k, v) for k, v in self.raw_headers if k != b"content-length"]
        self._body = body
        self._release = release
        self._alive = alive

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})

            async def pump() -> None:
                async for chunk in self._body:
                    if not self._alive():  # checked per write: a quiet stream writes heartbeats
                        await send({"type": "http.response.body", "body": SESSION_ENDED})
                        return
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
                await send({"type": "http.response.body", "body": b"", "more_body": False})

            async def watch() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass

            tasks = [asyncio.create_task(pump()), asyncio.create_task(watch())]
            try:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in tasks:
                    task.cancel()
                for task in tasks:
                    with contextlib.suppress(asyncio.CancelledError, OSError, Exception):
                        await task
        finally:
            aclose = getattr(self._body, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
            self._release()


# What the runtime answers about the request itself, so a stream would only end at once with it:
# answered as the error (400, 403, 404). Anything else (unavailable, draining, too slow) opens
# the stream, which waits for the runtime.
_REFUSALS = frozenset(
    {StatusCode.INVALID_ARGUMENT, StatusCode.NOT_FOUND, StatusCode.PERMISSION_DENIED}
)


# The login session a stream was opened with has ended (logout, or pushed out by newer logins):
# the stream ends, and the page does not reconnect (it would get 401).
SESSION_ENDED = encode(Frame({"reason": "SESSION_ENDED"}, "end", final=True))


def _status_frame(registry: RuntimeRegistry, runtime_id: str) -> Frame | None:
    for status in registry.runtimes():
        if status.runtime_id == runtime_id:
            return Frame({"state": str(status.state), "previous": "", "error": ""}, "runtime")
    return None


async def _frames(
    registry: RuntimeRegistry, runtime_id: str, worker_id: str, after_seq: int
) -> AsyncIterator[Frame | bytes]:
    first = _status_frame(registry, runtime_id)
    if first is not None:
        yield first
    stream: AsyncIterator[Any] | None = None
    encode_event = EventFrames().encode
    try:
        stream = registry.subscribe(runtime_id=runtime_id, worker_id=worker_id, after_seq=after_seq)
        async for item in stream:
            if isinstance(item, RegistryEvent):
                event = item.event
                if event.seq == 0:
                    continue
                yield encode_event(event)  # an event's frame: bytes, no Frame object
                if event.payload.KIND == "worker_deleted":
                    yield Frame({"reason": "WORKER_DELETED"}, "end", final=True)
                    return
            elif isinstance(item, RuntimeStateChanged):
                data: dict[str, Any] = {
                    "state": str(item.state),
                    "previous": str(item.previous),
                    "error": scrub(item.error),
                }
                yield Frame(data, "runtime")
            elif isinstance(item, CursorReset):
                reset = {"oldest_seq": item.oldest_seq, "last_seq": item.last_seq}
                yield Frame(reset, "reset", id=item.last_seq)
        yield Frame({"reason": "STREAM_ENDED"}, "end", final=True)
    except RuntimeIdentityChanged:
        yield Frame({"state": "IDENTITY_CHANGED", "previous": "", "error": ""}, "runtime")
        yield Frame({"reason": "RUNTIME_IDENTITY_CHANGED"}, "end", final=True)
    except RuntimeServiceError as exc:
        err = from_client_error(exc)
        ended = {"reason": err.reason, "message": err.message, "metadata": err.metadata}
        yield Frame(ended, "end", final=True)
    finally:
        aclose = getattr(stream, "aclose", None)  # cancels the upstream subscription
        if aclose is not None:
            await aclose()


def stream_client(request: Request) -> tuple[str, str]:
    """Whom a stream counts against (``StreamSlots.per_client``): the login session when the
    console has a token (the middleware has checked it), else the client's address. The key
    holds a digest of the session id, never the id."""
    sessions = backend_of(request).sessions
    cookie = request.cookies.get(COOKIE, "")
    if sessions is not None and cookie:
        return "session:" + hashlib.sha256(cookie.encode("utf-8", "surrogatepass")).hexdigest(), (
            "session"
        )
    return "address:" + (request.client.host if request.client else ""), "address"


@api
async def worker_events(request: Request) -> Response:
    backend = backend_of(request)
    registry = backend.require_registry()
    rid, wid = path_id(request, "runtime_id"), path_id(request, "worker_id")
    after = parse_cursor(
        request.headers.get("last-event-id"), request.query_params.get("after_seq")
    )
    try:
        # Unknown runtime or worker: a plain 404 now, not a stream that ends at once; a malformed
        # id likewise a 400 (it was a 200 stream ending with the 400 inside). Only a runtime that
        # cannot answer now still gets its stream (the page shows "reconnecting").
        handle = registry.handle(rid)
        await handle.get_worker(wid)
    except RuntimeServiceError as exc:
        if exc.code in _REFUSALS:
            raise
    release = backend.streams.acquire(*stream_client(request))  # 429 past a bound
    body = with_heartbeats(_frames(registry, rid, wid, after), backend.config.heartbeat_s)
    sessions, cookie = backend.sessions, request.cookies.get(COOKIE, "")
    if sessions is None:
        return EventStream(body, release)
    # A session that ends (logout; pushed out by newer logins) ends its open streams too: before,
    # a stream opened with a copy of the cookie went on delivering every event after the logout
    # that the README promises ends the copy.
    return EventStream(body, release, lambda: sessions.valid(cookie))
