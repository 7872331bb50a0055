"""Provider text reaches every reader as valid Unicode (engine._unicode), through a real server.

A provider that splits an emoji's UTF-16 surrogate pair over two stream chunks (``"\\ud83d"``,
then ``"\\ude00"``) — or sends a lone surrogate — used to put a string protobuf cannot encode into
the log: the run completed, but every later read failed with INTERNAL, for the whole runtime:
``ListEvents``, both subscription streams (replay hit the event on every reconnect) and the
worker's transcript. Now the pair is joined (the emoji arrives whole, in the second delta), a lone
surrogate becomes U+FFFD, and what streamed is exactly what was committed.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pytest
from serving import sse

from engine.testing import LoopbackServer, Reply
from runtime_client import RunState, TextDelta, ToolCallStarted

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0  # seconds: a safety net only


def chunk(**delta: Any) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]}


def finish(reason: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}


# json.dumps writes each surrogate as a \uXXXX escape, as such providers do
SPLIT_EMOJI = sse(
    chunk(content="\ud83d"), chunk(content="\ude00 ok"), chunk(content=" \udc80!"),
    finish("stop"), "[DONE]",
)  # fmt: skip
EXPECTED = "\U0001f600 ok \ufffd!"


async def _worker(serve: ServeFactory, provider: LoopbackServer) -> tuple[Any, str]:
    config = {
        "providers": {
            "loop": {"kind": "openai_chat", "base_url": provider.url + "/v1", "max_retries": 0}
        },
        "profiles": {"remote": {"provider": "loop", "model": "m", "tools": ["clock"]}},
    }
    client = (await serve(config=config)).client
    return client, (await client.create_worker(profile="remote")).worker.worker_id


@pytest.mark.parametrize("batched", [True, False])
async def test_a_split_surrogate_pair_arrives_whole_and_every_read_works(
    serve: ServeFactory, batched: bool
) -> None:
    async with LoopbackServer([Reply(body=SPLIT_EMOJI)]) as provider:
        client, worker_id = await _worker(serve, provider)
        accepted = await client.send_input(worker_id, "hi")
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
        assert run.state is RunState.COMPLETED

        transcript = [e async for e in client.iter_transcript(worker_id)]
        assert transcript[-1].message.text == EXPECTED

        listed = (await client.list_events(worker_id=worker_id)).events
        streamed = "".join(e.payload.text for e in listed if isinstance(e.payload, TextDelta))
        assert streamed == EXPECTED

        seen = []
        async with asyncio.timeout(BOUND):
            async for ev in client.subscribe(worker_id, batched=batched):
                seen.append(ev.seq)
                if ev.seq == listed[-1].seq:
                    break
        assert seen == [e.seq for e in listed]


async def test_tool_call_arguments_are_repaired_too(serve: ServeFactory) -> None:
    call = {"index": 0, "id": "call_1", "type": "function",
            "function": {"name": "clock", "arguments": '{"tz": "\udc80"}'}}  # fmt: skip
    replies = [
        Reply(body=sse(chunk(tool_calls=[call]), finish("tool_calls"), "[DONE]")),
        Reply(body=sse(chunk(content="done"), finish("stop"), "[DONE]")),
    ]
    async with LoopbackServer(replies) as provider:
        client, worker_id = await _worker(serve, provider)
        accepted = await client.send_input(worker_id, "time?")
        await client.wait_run(accepted.run.run_id, timeout=BOUND)
        events = (await client.list_events(worker_id=worker_id)).events
        [started] = [e.payload for e in events if isinstance(e.payload, ToolCallStarted)]
        assert started.arguments == '{"tz": "\ufffd"}'
        transcript = [e async for e in client.iter_transcript(worker_id)]
        assert transcript[-1].message.text == "done"
