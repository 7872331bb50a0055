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


async def with_heartbeats(
    frames: AsyncIterator[Frame | bytes],
    interval_s: float,
    *,
    buffer: int = 256,
    max_bytes: int = MAX_QUEUED_BYTES,
) -> AsyncGenerator[bytes, None]:
    """The encoded frames with a heartbeat whenever ``interval_s`` passes without one. An item
    of ``frames`` that is ``bytes`` is a worker event's frame already encoded (never final): the
    event hot path builds no :class:`Frame` per event. A pump task reads ``frames`` into a
    buffer bounded by ``buffer`` frames and ``max_bytes`` of encoded frames (one frame larger
    than that still goes, alone): a slow browser holds the pump back, and behind it the upstream
    subscription, which the runtime cuts and the registry resumes: never unbounded memory. One
    write joins at most ``MAX_BATCH`` frames and ``MAX_WRITE_BYTES`` (or one larger frame).
    Closing this generator (the browser left) cancels the pump and so the upstream subscription.

    The buffer is a plain list of encoded frames, not an ``asyncio.Queue``: the pump appends
    (one append and one addition per event) and wakes the writer only when it waits; the writer
    takes everything waiting in one piece. A queue's ``put`` and ``get`` per event were a tenth
    of the Backend's CPU per replayed event."""
    loop = asyncio.get_running_loop()
    pending: list[bytes] = []  # encoded frames not yet written, in order
    queued = 0  # their bytes
    done: list[BaseException | None] = []  # the pump's end: [None], or [the upstream's error]
    waiter: asyncio.Future[None] | None = None  # the writer waits on it while nothing is pending
    drained = asyncio.Event()  # set whenever the writer takes what is pending

    def wake() -> None:
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def pump() -> None:
        nonlocal queued
        try:
            async for frame in frames:
                final = False
                if not isinstance(frame, bytes):  # a status or end frame (small, rare)
                    final = frame.final
                    frame = encode(frame)
                size = len(frame)
                while pending and (len(pending) >= buffer or queued + size > max_bytes):
                    drained.clear()
                    await drained.wait()
                pending.append(frame)
                queued += size
                if waiter is not None:
                    wake()
                if final:  # nothing after it is sent: stop reading upstream
                    break
            done.append(None)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to the writer, which raises it after what came before
            done.append(exc)
        finally:
            wake()
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

    task = asyncio.create_task(pump(), name="sse-pump")
    try:
        yield PREAMBLE
        while True:
            if not pending and not done:
                waiter = loop.create_future()
                try:
                    async with asyncio.timeout(interval_s):
                        await waiter
                except TimeoutError:
                    yield HEARTBEAT
                    continue
                finally:
                    waiter = None
                # One pass of the loop lets the pump add what is already readable upstream (no
                # added wait): a busy stream (a replay, a fast model) then goes out in fewer,
                # larger writes: one ASGI send (one socket write) per batch, not per event.
                await asyncio.sleep(0)
            if pending:
                if len(pending) <= MAX_BATCH and queued <= MAX_WRITE_BYTES:
                    chunk = b"".join(pending)  # the usual case: everything waiting, one write
                    pending.clear()
                    queued = 0
                else:
                    taken = written = 0
                    for frame in pending:
                        taken += 1
                        written += len(frame)
                        if taken >= MAX_BATCH or written >= MAX_WRITE_BYTES:
                            break
                    chunk = b"".join(pending[:taken])
                    del pending[:taken]
                    queued -= written
                drained.set()
                yield chunk
            elif done:
                if done[0] is not None:
                    raise done[0]
                return
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
