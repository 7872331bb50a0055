"""Gap-free attach through a real server: each TranscriptEntry carries the seq of the event that
committed it, and GetTranscript's resume_after_seq is the cursor to subscribe after — so loading
the transcript and then subscribing neither misses nor repeats anything, even mid-message."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from serving import eventually

from runtime_client import (
    Event,
    InputCommitted,
    MessageCommitted,
    RunFinished,
    TextDelta,
    TranscriptPage,
)

if TYPE_CHECKING:
    from serving import Served


async def _events(served: Served, worker_id: str) -> list[Event]:
    page = await served.client.list_events(worker_id=worker_id, page_size=1000)
    return list(page.events)


async def test_entries_carry_the_seq_of_their_committing_event(served: Served) -> None:
    client = served.client
    created = await client.create_worker(profile="echo")
    wid = created.worker.worker_id
    for text in ("one", "two"):
        accepted = await client.send_input(wid, text)
        await client.wait_run(accepted.run.run_id, timeout=30)
    page = await client.get_transcript(wid)
    assert isinstance(page, TranscriptPage)
    commits = {
        e.payload.entry.index: e.seq
        for e in await _events(served, wid)
        if isinstance(e.payload, InputCommitted | MessageCommitted)
    }
    assert [x.seq for x in page.items] == [commits[x.index] for x in page.items]
    assert all(x.seq > 0 for x in page.items)
    # Idle worker: everything is in the transcript, so the cursor is the newest seq.
    last = (await client.list_events(page_size=1)).last_seq
    assert page.resume_after_seq == last


async def test_subscribing_after_the_cursor_mid_message_misses_and_repeats_nothing(
    served: Served,
) -> None:
    client = served.client
    wid = (await client.create_worker(profile="slow")).worker.worker_id
    # 200 words, 20 ms each: the answer is still streaming when the page is read below, even
    # on a loaded machine (40 words left under a second for that)
    text = " ".join(f"w{i}" for i in range(200))
    accepted = await client.send_input(wid, text)

    async def some_deltas() -> bool:
        return sum(isinstance(e.payload, TextDelta) for e in await _events(served, wid)) >= 3

    await eventually(some_deltas, within=30)
    page = await client.get_transcript(wid)
    # The input is committed; the answer is still streaming, so it is not in the page...
    assert [x.message.role.value for x in page.items][-1] == "USER"
    # ...and the cursor is the seq of that input entry: its deltas so far come again.
    assert page.resume_after_seq == page.items[-1].seq
    received: list[Event] = []
    stream = client.subscribe(wid, after_seq=page.resume_after_seq)
    async with contextlib.aclosing(stream):
        async with asyncio.timeout(60):
            async for event in stream:
                received.append(event)
                if isinstance(event.payload, RunFinished):
                    break
    held = {x.seq for x in page.items}
    assert not held & {e.seq for e in received}, "an entry the page holds came again"
    streamed = "".join(e.payload.text for e in received if isinstance(e.payload, TextDelta))
    committed = [e for e in received if isinstance(e.payload, MessageCommitted)]
    last = committed[-1].payload
    assert isinstance(last, MessageCommitted)
    assert streamed == text == last.entry.message.text
    assert last.entry.seq == committed[-1].seq
    await client.wait_run(accepted.run.run_id, timeout=30)
    # Loaded again now: the page holds the answer and nothing new is to come for it.
    after = await client.get_transcript(wid)
    assert after.items[-1].seq == committed[-1].seq
    assert after.resume_after_seq >= received[-1].seq
