"""A console stream holds a bounded number of *bytes* for a slow browser, not only a bounded
number of events, and joins a bounded number of bytes into one write.

Before, the pump between the upstream subscription and the browser was bounded by 256 events
whatever their size, and everything waiting was joined into one write: an event of a runtime may
be megabytes (an InputCommitted of a long input sent to the runtime directly; a hostile runtime
sends 64 MiB messages), so a browser reading slowly made the Backend hold 256 of them per stream,
and then copy them all into one buffer. Driven through :func:`backend.sse.with_heartbeats`, the
pump the event route uses, with a producer that counts what was taken from it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from backend_serving import eventually

from backend.sse import MAX_QUEUED_BYTES, MAX_WRITE_BYTES, PREAMBLE, Frame, with_heartbeats

EVENT = 64 * 1024  # bytes per event: 64 fit the byte bound, far under the 256-event bound
HELD = MAX_QUEUED_BYTES // EVENT


async def test_a_slow_reader_holds_a_bounded_number_of_bytes() -> None:
    taken = 0

    async def upstream() -> AsyncIterator[Frame | bytes]:
        nonlocal taken
        for seq in range(1, 1000):
            taken += 1
            yield f"id: {seq}\ndata: ".encode() + b"x" * (EVENT - 20) + b"\n\n"

    out = with_heartbeats(upstream(), 30)
    try:
        assert await anext(out) == PREAMBLE
        # the browser reads nothing now: the pump fills up to its bound and waits
        await eventually(lambda: taken >= HELD, timeout=20)
        await asyncio.sleep(0.5)  # time for a pump with no byte bound to run on
        assert taken <= HELD + 2, taken  # what fits, the one waiting, the one being read
        # what one write joins is bounded too
        for _ in range(8):
            chunk = await anext(out)
            assert len(chunk) <= MAX_WRITE_BYTES + EVENT, len(chunk)
        assert taken <= HELD + 2 + 8 * (MAX_WRITE_BYTES // EVENT + 1)
    finally:
        await out.aclose()


async def test_an_event_larger_than_the_bound_still_goes() -> None:
    big = b"id: 1\ndata: " + b"y" * (MAX_QUEUED_BYTES * 2) + b"\n\n"

    async def upstream() -> AsyncIterator[Frame | bytes]:
        yield big
        yield b"id: 2\ndata: {}\n\n"
        yield Frame({"reason": "STREAM_ENDED"}, "end", final=True)

    chunks = [c async for c in with_heartbeats(upstream(), 30)]
    assert chunks[0] == PREAMBLE
    joined = b"".join(chunks[1:])
    assert joined.startswith(big)
    assert b"id: 2\n" in joined
    assert joined.endswith(b'event: end\ndata: {"reason":"STREAM_ENDED"}\n\n')
