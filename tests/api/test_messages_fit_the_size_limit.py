"""Everything the server sends fits in one gRPC message (``max_message_bytes``):

- an input must fit in one event message: text whose UTF-8 form is larger than the message limit
  allows is refused up front (INVALID_ARGUMENT naming ``text``) instead of being accepted and then
  failing to reach any subscriber;
- pages are bounded by size as well as count: with a small message limit, a page of large events
  or transcript entries is cut short (and paging goes on from there) instead of failing to send."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from runtime_client import InvalidArgument, RunState
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import ServeFactory


async def test_input_too_large_for_one_message_is_refused(serve: ServeFactory) -> None:
    served = await serve(limits=replace(Limits(), max_message_bytes=256 * 1024))
    client = served.client
    worker = (await client.create_worker(profile="echo")).worker.worker_id

    # 62k characters = 248 kB of UTF-8: under gRPC's 256 kB receive limit, over what one event
    # can carry once its framing headroom is kept
    wide = "\N{GRINNING FACE}" * 62_000
    with pytest.raises(InvalidArgument) as caught:
        await client.send_input(worker, wide)
    assert caught.value.field == "text"
    assert (await client.get_worker(worker)).active_run_id == ""
    assert (await client.get_transcript(worker)).total_size == 0

    ascii_text = "a" * 150_000  # more characters, but only 150 kB: it fits and is delivered
    accepted = await client.send_input(worker, ascii_text)
    run = await client.wait_run(accepted.run.run_id, timeout=30)
    assert run.state is RunState.COMPLETED


# 4-byte UTF-8 characters: the wire size is four times the character count.
WORD = "\N{GRINNING FACE}" * 250  # 1,000 bytes
TEXT = " ".join([WORD] * 60)  # ~60 kB: one event of it fits a 256 kB message; three runs do not


async def test_list_events_and_transcript_pages_fit_the_message_limit(serve: ServeFactory) -> None:
    limits = replace(Limits(), max_message_bytes=256 * 1024)
    served = await serve(limits=limits)
    client = served.client
    worker = (await client.create_worker(profile="echo")).worker.worker_id
    for _ in range(3):
        accepted = await client.send_input(worker, TEXT)
        run = await client.wait_run(accepted.run.run_id, timeout=30)
        assert run.state is RunState.COMPLETED

    seqs: list[int] = []
    pages = 0
    cursor = 0
    while True:
        page = await client.list_events(after_seq=cursor, page_size=1000)
        if not page.events:
            break
        pages += 1
        seqs += [e.seq for e in page.events]
        cursor = page.events[-1].seq
    assert pages > 1, "the log (~540 kB) must have been split by size"
    assert seqs == list(range(1, seqs[-1] + 1))

    texts: list[str] = []
    token = ""
    pages = 0
    while True:
        transcript = await client.get_transcript(worker, page_size=1000, page_token=token)
        texts += [e.message.text for e in transcript.items]
        pages += 1
        token = transcript.next_page_token
        if not token:
            break
    assert pages > 1
    assert texts == [TEXT] * 6
