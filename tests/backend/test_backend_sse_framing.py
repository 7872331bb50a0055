"""The console's SSE pieces without a network: frames, the resume cursor, heartbeats, the bound
on open streams, and that closing the stream closes its upstream."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest

from backend.errors import ApiError
from backend.sse import (
    HEARTBEAT,
    PREAMBLE,
    Frame,
    StreamSlots,
    encode,
    parse_cursor,
    with_heartbeats,
)


def test_a_frame_carries_its_seq_as_id_and_one_line_of_json() -> None:
    text = encode(Frame({"text": "a\nb\r\n<script>"}, id=42)).decode()
    assert text.startswith("id: 42\ndata: ")
    assert text.endswith("\n\n")
    assert text.count("\n") == 3  # id, data, blank: a newline in the text cannot split the frame
    assert json.loads(text.split("data: ", 1)[1])["text"] == "a\nb\r\n<script>"
    reset = encode(Frame({"last_seq": 9}, "reset", id=9)).decode()
    assert reset.startswith("event: reset\nid: 9\n")


@pytest.mark.parametrize(
    ("header", "query", "expected"),
    [(None, None, 0), (None, "17", 17), ("23", "17", 23), (" 5 ", None, 5), ("0", None, 0)],
)
def test_last_event_id_wins_over_after_seq(
    header: str | None, query: str | None, expected: int
) -> None:
    assert parse_cursor(header, query) == expected


@pytest.mark.parametrize(
    ("header", "query", "field"),
    [
        ("abc", None, "Last-Event-ID"),
        ("-1", None, "Last-Event-ID"),
        ("1.5", None, "Last-Event-ID"),
        ("9" * 21, None, "Last-Event-ID"),
        (str(2**64), None, "Last-Event-ID"),
        ("", None, "Last-Event-ID"),
        (None, "x1", "after_seq"),
        (None, "١٢", "after_seq"),  # non-ASCII digits are not a seq
    ],
)
def test_a_malformed_cursor_is_a_400_naming_its_field(
    header: str | None, query: str | None, field: str
) -> None:
    with pytest.raises(ApiError) as info:
        parse_cursor(header, query)
    assert info.value.status == 400
    assert info.value.metadata == {"field": field}


def test_the_stream_bound_refuses_with_429_and_releases_once() -> None:
    slots = StreamSlots(2)
    a, b = slots.acquire(), slots.acquire()
    with pytest.raises(ApiError) as info:
        slots.acquire()
    assert info.value.status == 429
    assert info.value.retry_after is not None
    a()
    a()  # idempotent: one slot back, not two
    assert slots.open == 1
    slots.acquire()
    with pytest.raises(ApiError):
        slots.acquire()
    b()


async def test_heartbeats_fill_silence_and_closing_ends_the_upstream() -> None:
    closed = asyncio.Event()
    gate = asyncio.Event()

    async def upstream() -> AsyncIterator[Frame]:
        try:
            yield Frame({"n": 1}, id=1)
            await gate.wait()  # silence: heartbeats come meanwhile
            yield Frame({"n": 2}, id=2)
            await asyncio.Event().wait()
        finally:
            closed.set()

    out = with_heartbeats(upstream(), 0.05)
    got = [await anext(out), await anext(out)]
    assert got == [PREAMBLE, encode(Frame({"n": 1}, id=1))]
    assert await anext(out) == HEARTBEAT
    gate.set()
    while (chunk := await anext(out)) == HEARTBEAT:
        pass
    assert chunk == encode(Frame({"n": 2}, id=2))
    await out.aclose()  # the browser left
    async with asyncio.timeout(10):
        await closed.wait()


async def test_a_final_frame_ends_the_stream_and_an_upstream_error_is_raised() -> None:
    async def upstream() -> AsyncIterator[Frame]:
        yield Frame({"reason": "WORKER_DELETED"}, "end", final=True)
        yield Frame({"never": True})

    chunks = [c async for c in with_heartbeats(upstream(), 5)]
    assert chunks == [PREAMBLE, encode(Frame({"reason": "WORKER_DELETED"}, "end", final=True))]

    async def failing() -> AsyncIterator[Frame]:
        raise ValueError("upstream broke")
        yield Frame({})  # pragma: no cover

    out = with_heartbeats(failing(), 5)
    assert await anext(out) == PREAMBLE
    with pytest.raises(ValueError, match="upstream broke"):
        await anext(out)
    with contextlib.suppress(StopAsyncIteration):
        await out.aclose()


def test_the_delta_fast_path_writes_the_same_frame_as_the_generic_view() -> None:
    from backend.views import EventFrames, event_view
    from runtime_client import (
        Event,
        ReasoningDelta,
        Run,
        RunError,
        RunFinished,
        RunState,
        TextDelta,
    )

    frames = EventFrames()  # one stream's encoder, across events
    run = Run("r1", "w1", RunState.FAILED, error=RunError("X", "at http://10.1.2.3:99/v1"))
    for payload in (
        TextDelta('say "hi"\n\\ <b>é</b> \u2028 \x00'),
        ReasoningDelta("why\tnot"),
        RunFinished(run),
    ):
        event = Event(seq=7, worker_id="w1", run_id="r1", time=1.25, payload=payload)
        fast = frames.encode(event)
        assert fast == encode(Frame(event_view(event), id=7))
        assert json.loads(fast.decode().split("data: ", 1)[1]) == event_view(event)
    assert b"10.1.2.3" not in fast
