"""An input must fit in one event message: text whose UTF-8 form is larger than the message limit
allows is refused up front (INVALID_ARGUMENT naming ``text``) instead of being accepted and then
failing to reach any subscriber."""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

import pytest

from runtime_client import InvalidArgument, RunState
from runtime_server.model import Limits

if TYPE_CHECKING:
    from conftest import ServeFactory


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
