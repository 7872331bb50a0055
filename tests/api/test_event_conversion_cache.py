"""Each event is converted to protobuf once and the message reused (grpc/_eventcache): the reused
message is byte-identical to a fresh conversion for every payload type, a seq whose event
differs is converted afresh, the cache is bounded — and through a real server, every subscriber
(per-event and batched) and ListEvents see the same events."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime_client import RunFinished
from runtime_server.grpc import EventCache
from runtime_server.grpc import convert as cv
from runtime_server.model import Event, TextDelta

if TYPE_CHECKING:
    from serving import ServeFactory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from store_samples import all_payloads


def wire_payloads() -> list[object]:
    """The store's samples that protobuf can carry (some hold lone surrogates on purpose)."""
    out: list[object] = []
    for payload in all_payloads():
        try:
            cv.event(Event(1, 1.0, "w1", "r1", payload))
        except UnicodeEncodeError:
            continue
        out.append(payload)
    return out


def test_cached_message_is_byte_identical_to_a_fresh_conversion() -> None:
    cache = EventCache()
    payloads = wire_payloads()
    assert len(payloads) >= 10
    for seq, payload in enumerate(payloads, start=1):
        event = Event(seq, 1_700_000_000.25 + seq, "w1", "r1", payload)  # type: ignore[arg-type]
        first = cache.convert(event)
        again = cache.convert(event)
        assert again is first  # converted once
        fresh = cv.event(event).SerializeToString(deterministic=True)
        assert first.SerializeToString(deterministic=True) == fresh
    assert cache.misses == len(payloads)
    assert cache.hits == len(payloads)


def test_an_equal_event_hits_and_a_different_event_at_the_same_seq_does_not() -> None:
    cache = EventCache()
    a = Event(7, 1.5, "w1", "r1", TextDelta("one"))
    cache.convert(a)
    assert cache.convert(Event(7, 1.5, "w1", "r1", TextDelta("one"))) is cache.convert(a)
    other = Event(7, 1.5, "w1", "r1", TextDelta("two"))  # a seq handed out again after a failure
    assert cache.convert(other).text_delta.text == "two"


def test_the_cache_is_bounded() -> None:
    cache = EventCache(capacity=3)
    for seq in range(1, 11):
        cache.convert(Event(seq, 1.0, "w1", "", TextDelta("x")))
    assert len(cache) == 3
    with pytest.raises(ValueError, match="capacity"):
        EventCache(capacity=0)


async def test_every_stream_and_list_events_see_the_same_events(serve: ServeFactory) -> None:
    served = await serve()
    client = served.client
    created = await client.create_worker(profile="echo")
    wid = created.worker.worker_id

    async def collect(batched: bool, worker_id: str) -> list[object]:
        got: list[object] = []
        events = client.subscribe(worker_id, after_seq=created.seq, batched=batched)
        async with contextlib.aclosing(events):
            async for ev in events:
                if ev.worker_id == wid:
                    got.append(ev)
                if isinstance(ev.payload, RunFinished):
                    return got
        return got

    tasks = [
        asyncio.create_task(collect(batched, worker))
        for batched in (True, False)
        for worker in (wid, "")
    ]
    await asyncio.sleep(0)
    await client.send_input(wid, "one two three four five")
    streams = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    page = await client.list_events(after_seq=created.seq, worker_id=wid)
    listed = list(page.events)
    assert listed
    assert all(s == listed[: len(s)] for s in streams)
    assert all(len(s) == len(streams[0]) for s in streams)
