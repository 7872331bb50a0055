"""Server-Sent Events for the console: framing, the resume cursor, heartbeats, the stream bound.

A worker's event stream is ``text/event-stream``:

- a runtime event: ``id: <seq>`` and ``data: <json>`` (default event type ``message``), so the
  browser's ``EventSource`` resumes after a cut by sending ``Last-Event-ID: <seq>``;
- ``event: reset`` (``id:`` = the seq the stream continues after): the cursor is older than the
  runtime's retention; the page reloads its transcript and goes on;
- ``event: runtime``: the runtime's health changed (e.g. UNREACHABLE while the registry
  reconnects, then READY); the stream stays open meanwhile;
- ``event: end``: the stream ended for good (worker deleted, runtime identity changed); the page
  must not reconnect;
- ``: hb`` comment lines while nothing else is sent, so a proxy or the browser can tell "quiet"
  from "cut" (a sleeping laptop's dead connection is noticed at the next write);
- ``retry: 1000`` once at the start: reconnect after one second, not the browser default of three.

Everything here is pure (no I/O) except :func:`with_heartbeats`, which only waits on its input.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from backend.errors import ApiError
from backend.views import utf8

__all__ = ["Frame", "StreamSlots", "encode", "parse_cursor", "with_heartbeats"]

MAX_CURSOR_DIGITS = 20  # a uint64
RETRY_MS = 1000
MAX_BATCH = 256  # frames joined into one write at most


@dataclass(frozen=True, slots=True)
class Frame:
    data: Mapping[str, Any]
    event: str = ""  # "" = message
    id: int | None = None
    final: bool = False  # the stream ends after this frame
    encoded: bytes = b""  # the whole frame, already encoded (the event hot path)


def encode(frame: Frame) -> bytes:
    """One SSE frame. JSON never holds a raw newline, so ``data`` is one line."""
    if frame.encoded:
        return frame.encoded
    lines = []
    if frame.event:
        lines.append(f"event: {frame.event}")
    if frame.id is not None:
        lines.append(f"id: {frame.id}")
    lines.append("data: " + json.dumps(frame.data, separators=(",", ":"), ensure_ascii=False))
    return utf8("\n".join(lines) + "\n\n")


HEARTBEAT = b": hb\n\n"
PREAMBLE = f"retry: {RETRY_MS}\n\n".encode()


def parse_cursor(last_event_id: str | None, after_seq: str | None) -> int:
    """The seq to resume after: ``Last-Event-ID`` (sent by the browser on reconnect) wins over
    ``?after_seq=``; neither = 0 (from the oldest retained). Anything but a decimal uint64 is a
    400 naming the field."""
    for field, value in (("Last-Event-ID", last_event_id), ("after_seq", after_seq)):
        if value is None:
            continue
        text = value.strip()
        if not text.isascii() or not text.isdigit() or len(text) > MAX_CURSOR_DIGITS:
            raise ApiError.invalid(field, "must be a non-negative integer (an event seq)")
        seq = int(text)
        if seq >= 2**64:
            raise ApiError.invalid(field, "must fit in 64 bits")
        return seq
    return 0


class StreamSlots:
    """Bounds on open console streams: each holds an upstream subscription, a task and a socket.
    Past a bound a new stream is refused with 429 (the page retries), never queued.

    - ``limit``: over all browsers.
    - ``per_client``: per client, so that one client cannot take every slot and starve the rest
      (before, one logged-in session, or one address, could open all of them). The client is
      the login session when the console has a token (people behind one address — a NAT, a
      proxy — each have their own; more slots need more logins, which need the token), else
      the client's address (``scope["client"]``: behind a proxy uvicorn trusts, the address it
      forwards). A browser's console tabs share four streams (``static/slots.js``), so the
      default, 16, leaves room for a few browsers behind one address and for the moments a
      closed stream is not yet noticed.
    """

    def __init__(self, limit: int, per_client: int | None = None) -> None:
        self.limit = limit
        self.per_client = limit if per_client is None else per_client
        self.open = 0
        self._by_client: dict[str, int] = {}

    def acquire(self, client: str = "", kind: str = "address") -> Callable[[], None]:
        """Take a slot for ``client`` (a key: ``kind`` says what it is, for the error); returns
        its release (idempotent). Raises 429 when none is free."""
        if self.open >= self.limit:
            raise ApiError(
                429,
                "TOO_MANY_STREAMS",
                f"at most {self.limit} console streams may be open",
                {"limit": str(self.limit)},
                retry_after=2,
            )
        held = self._by_client.get(client, 0)
        if held >= self.per_client:
            raise ApiError(
                429,
                "TOO_MANY_CLIENT_STREAMS",
                f"at most {self.per_client} console streams may be open per {kind}: close a "
                "console tab (or another browser) first",
                {"limit": str(self.per_client), "per": kind},
                retry_after=2,
            )
        self.open += 1
        self._by_client[client] = held + 1
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self.open -= 1
                left = self._by_client[client] - 1
                if left:
                    self._by_client[client] = left
                else:
                    del self._by_client[client]  # no key is kept for a client with none open

        return release

    def clients(self) -> int:
        """Clients holding a stream now."""
        return len(self._by_client)


# Bytes of encoded events a stream holds for a slow browser, and joins into one write, at most.
# Counting items alone (``buffer``) let one stream hold 256 events of any size: a runtime's events
# may each be megabytes (an InputCommitted of a long input sent to the runtime directly), so a
# browser reading slowly made the Backend hold up to 256 of them and join them into one write.
MAX_QUEUED_BYTES = 4 << 20
MAX_WRITE_BYTES = 1 << 20


def _size(item: object) -> int:
    return len(item) if isinstance(item, bytes) else 0  # a Frame is small (status, end)


async def with_heartbeats(
    frames: AsyncIterator[Frame | bytes],
    interval_s: float,
    *,
    buffer: int = 256,
    max_bytes: int = MAX_QUEUED_BYTES,
) -> AsyncGenerator[bytes, None]:
    """The encoded frames with a heartbeat whenever ``interval_s`` passes without one. An item
    of ``frames`` that is ``bytes`` is a worker event's frame already encoded (never final): the
    event hot path builds no :class:`Frame` per event. A pump task
    reads ``frames`` into a queue bounded by ``buffer`` items and ``max_bytes`` of encoded
    events (one event larger than that still goes, alone): a slow browser holds the pump back,
    and behind it the upstream subscription, which the runtime cuts and the registry resumes:
    never unbounded memory. One write joins at most ``MAX_WRITE_BYTES`` (or one larger event).
    Closing this generator (the browser left) cancels the pump and so the upstream subscription."""
    queue: asyncio.Queue[Frame | bytes | BaseException | None] = asyncio.Queue(buffer)
    queued = 0  # bytes of the events in the queue
    drained = asyncio.Event()  # set whenever the consumer takes something

    async def pump() -> None:
        nonlocal queued
        try:
            async for frame in frames:
                size = _size(frame)
                while queued and queued + size > max_bytes:
                    drained.clear()
                    await drained.wait()
                queued += size
                await queue.put(frame)
            await queue.put(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the consumer, which renders it
            await queue.put(exc)
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    task = asyncio.create_task(pump(), name="sse-pump")
    try:
        yield PREAMBLE
        while True:
            try:
                async with asyncio.timeout(interval_s):
                    item = await queue.get()
            except TimeoutError:
                yield HEARTBEAT
                continue
            # Everything already waiting goes out as one write: one ASGI send (one socket write)
            # per batch, not per event, when the stream is busy (a replay, a fast model).
            # One pass of the loop lets the pump add what is already readable upstream (no
            # added wait): a busy stream then goes out in fewer, larger writes.
            await asyncio.sleep(0)
            chunks: list[bytes] = []
            written = 0
            while True:
                if isinstance(item, bytes):  # an event's frame, encoded upstream (the hot path)
                    chunks.append(item)
                    written += len(item)
                    queued -= len(item)
                    drained.set()
                elif item is None or isinstance(item, BaseException):
                    break
                else:
                    chunks.append(encode(item))
                    if item.final:
                        break
                if len(chunks) >= MAX_BATCH or written >= MAX_WRITE_BYTES or queue.empty():
                    break
                item = queue.get_nowait()
            if chunks:
                yield b"".join(chunks)
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            if not isinstance(item, bytes) and item.final:
                return
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
