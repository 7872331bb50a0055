"""The SSE decoder at awkward chunk boundaries, on real recorded streams and on edge cases."""

from __future__ import annotations

import itertools

import pytest
from recorded_streams import StreamFixture

from engine import SSEDecoder, SSEEvent
from engine.testing import chunked

# Streams are split into two chunks at every byte offset. The one bigger stream (47 KB) would take
# ~15 s that way, so it is split at every offset of its first TWO_CHUNK_MAX bytes (cut at an event
# boundary); the strided test then puts a chunk boundary at every byte offset of the whole stream.
TWO_CHUNK_MAX = 16 * 1024
STRIDE = 97


def decode(*chunks: bytes) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    for chunk in chunks:
        events += decoder.feed(chunk)
    return events + decoder.flush()


def test_recorded_stream_decodes_to_events(stream_fixture: StreamFixture) -> None:
    events = decode(stream_fixture.data)
    assert events, "a recorded stream has events"
    if stream_fixture.wire == "openai":
        assert events[-1].data == "[DONE]"
        assert all(e.event == "message" for e in events)
    else:
        assert events[0].event == "message_start"
        assert events[-1].event == "message_stop"


def test_every_two_chunk_split_gives_the_same_events(stream_fixture: StreamFixture) -> None:
    data = stream_fixture.data
    if len(data) > TWO_CHUNK_MAX:
        data = data[: data.rindex(b"\n\n", 0, TWO_CHUNK_MAX) + 2]
    expected = decode(data)
    assert expected
    for offset in range(len(data) + 1):
        assert decode(data[:offset], data[offset:]) == expected, f"split at byte {offset}"


def test_a_boundary_at_every_offset_gives_the_same_events(stream_fixture: StreamFixture) -> None:
    data = stream_fixture.data
    expected = decode(data)
    for start in range(STRIDE):
        cuts = [0, *range(start, len(data), STRIDE), len(data)]
        chunks = [data[a:b] for a, b in itertools.pairwise(cuts)]
        assert decode(*chunks) == expected, f"boundaries at {start} mod {STRIDE}"


@pytest.mark.parametrize("sizes", [(1,), (2,), (3, 5, 7), (13, 1, 64), (4096,)])
def test_odd_sized_chunks_give_the_same_events(
    stream_fixture: StreamFixture, sizes: tuple[int, ...]
) -> None:
    data = stream_fixture.data
    assert decode(*chunked(data, sizes)) == decode(data)


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_line_endings(ending: bytes) -> None:
    body = ending.join([b"event: a", b"data: 1", b"data: 2", b"", b"data: 3", b"", b""])
    expected = [SSEEvent("a", "1\n2"), SSEEvent("message", "3")]
    assert decode(body) == expected
    for offset in range(len(body) + 1):
        assert decode(body[:offset], body[offset:]) == expected


def test_crlf_split_between_cr_and_lf_is_one_line_ending() -> None:
    # If the LF after a chunk-final CR counted as a second line ending, it would be a blank line
    # and dispatch "1" alone.
    assert decode(b"data: 1\r", b"\ndata: 2\r\n\r\n") == [SSEEvent("message", "1\n2")]


def test_multibyte_utf8_split_anywhere() -> None:
    text = "data: héllo — 日本語 🎉\n\n".encode()
    expected = [SSEEvent("message", "héllo — 日本語 🎉")]
    for offset in range(len(text) + 1):
        assert decode(text[:offset], text[offset:]) == expected
    assert decode(*chunked(text, (1,))) == expected


def test_comments_fields_and_spaces() -> None:
    body = b": keep-alive\ndata:no-space\ndata:  two spaces\nunknown: field\ndata\n\n"
    assert decode(body) == [SSEEvent("message", "no-space\n two spaces\n")]


def test_id_persists_and_retry_needs_digits() -> None:
    body = b"id: 7\nretry: 1500\ndata: a\n\nretry: soon\ndata: b\n\nid\ndata: c\n\n"
    assert decode(body) == [
        SSEEvent("message", "a", "7", 1500),
        SSEEvent("message", "b", "7", 1500),
        SSEEvent("message", "c", "", 1500),
    ]


def test_blank_lines_without_data_dispatch_nothing_and_reset_the_event_type() -> None:
    assert decode(b"event: x\n\n\n\ndata: 1\n\n") == [SSEEvent("message", "1")]


def test_leading_bom_is_dropped_even_when_split() -> None:
    body = "\ufeffdata: 1\n\n".encode()
    assert decode(body[:1], body[1:2], body[2:]) == [SSEEvent("message", "1")]


def test_flush_dispatches_an_unterminated_last_event() -> None:
    assert decode(b"event: message_stop\ndata: {}") == [SSEEvent("message_stop", "{}")]
    assert decode(b"data: 1\n") == [SSEEvent("message", "1")]
    assert decode(b"data: 1\r") == [SSEEvent("message", "1")]
    assert decode(b"") == []


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert decode(b"data: \xff\xfe ok\n\n") == [SSEEvent("message", "\ufffd\ufffd ok")]
