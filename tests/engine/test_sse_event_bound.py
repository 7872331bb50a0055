"""One server-sent event is bounded (engine._sse, ``max_event_chars``), and a long line costs time
linear in its length.

A provider — or a ``base_url`` pointed at the wrong server — that streams a line without ever
ending it used to grow the decoder's buffer without bound, re-joining and re-scanning it on every
chunk (quadratic: 7 s of a blocked event loop for a 10 MB line, which every worker of the runtime
shares). Now the line's chunks are joined once, and an event over the bound is a protocol error.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from engine import (
    Message,
    OpenAIChatProvider,
    ProviderProtocolError,
    RetryPolicy,
    Role,
    SSEDecoder,
    SSEEventTooLarge,
    TurnConfig,
    run_turn,
)
from engine.testing import EventRecorder, LoopbackServer, Reply

BOUND = 60  # seconds: a safety net only, never a speed assertion
FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01, max_stream_restarts=1)
OVER = 16 * 1024 * 1024 + 1024  # past the default bound


def test_a_line_arriving_in_many_chunks_is_one_event() -> None:
    decoder = SSEDecoder(max_event_chars=1_000_000)
    assert decoder.feed(b"data: ") == []
    for _ in range(100):
        assert decoder.feed(b"x" * 1000) == []
    events = decoder.feed(b"\r")  # a CR ends the line; the LF of a CRLF may follow
    events += decoder.feed(b"\n\ndata: next\n\n")
    assert [e.data for e in events] == ["x" * 100_000, "next"]


def test_an_unended_line_over_the_bound_raises() -> None:
    decoder = SSEDecoder(max_event_chars=10_000)
    decoder.feed(b"data: " + b"x" * 9_000)
    with pytest.raises(SSEEventTooLarge):
        decoder.feed(b"x" * 2_000)


def test_data_lines_of_one_event_over_the_bound_raise() -> None:
    decoder = SSEDecoder(max_event_chars=10_000)
    with pytest.raises(SSEEventTooLarge):
        decoder.feed(b"data: " + b"y" * 99 + b"\n" * 1 + (b"data: " + b"y" * 99 + b"\n") * 100)


def test_the_unended_last_line_is_still_dispatched_at_flush() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: par") == []
    assert decoder.feed(b"tial") == []
    [event] = decoder.flush()
    assert event.data == "partial"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b"data: " + b"x" * OVER, id="one line never ended"),
        pytest.param(
            b"data: xxxxxxxxxxxxxxxxxxxx\n" * (OVER // 20), id="data lines, no blank line"
        ),
    ],
)
async def test_a_provider_streaming_an_endless_event_fails_the_turn(
    client: httpx.AsyncClient, body: bytes
) -> None:
    chunks = [65536] * (len(body) // 65536 + 1)
    async with LoopbackServer([Reply(body=body, chunk_sizes=chunks)]) as server:
        with pytest.raises(ProviderProtocolError, match="larger than"):
            await asyncio.wait_for(
                run_turn(
                    OpenAIChatProvider(client, server.url + "/v1"),
                    TurnConfig(model="m", retry=FAST),
                    (Message(Role.USER, "hi"),),
                    emit=EventRecorder(),
                ),
                BOUND,
            )
    assert len(server.requests) == 1  # not retried: the same bytes would come again
