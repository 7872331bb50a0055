"""A run cut short keeps what the model said (issue 8 item 7), through the real server and client.

CancelRun, StopWorker and busy policy INTERRUPT commit the partial answer as an assistant entry
marked ``incomplete`` with stop reason ``cancelled`` (a MessageCommitted event before RunFinished),
its usage counts, and the next request sends it to the provider — checked on the request bodies a
loopback HTTP provider receives, for OpenAI Chat and Anthropic Messages. An empty partial commits
nothing, and the two user messages in a row still make a valid Anthropic request.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from serving import eventually, sse

from engine.testing import LoopbackServer, Reply
from runtime_client import (
    BusyPolicy,
    Event,
    MessageCommitted,
    Role,
    RunFinished,
    RunState,
    RuntimeClient,
    TextDelta,
    TranscriptEntry,
    WorkerState,
)

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0  # seconds: a safety net only, never a speed assertion
# 200 words at 500 ms a word ("very-slow"): the run is still streaming when the test cuts it.
LONG = " ".join(f"w{i}" for i in range(200))


async def _deltas(client: RuntimeClient, worker_id: str, after_seq: int, n: int) -> None:
    """Wait until the run has streamed ``n`` text deltas."""
    seen = 0
    async with asyncio.timeout(BOUND):
        async for ev in client.subscribe(worker_id, after_seq=after_seq):
            if isinstance(ev.payload, TextDelta):
                seen += 1
                if seen >= n:
                    return


async def _events(client: RuntimeClient, worker_id: str) -> list[Event]:
    return list((await client.list_events(worker_id=worker_id)).events)


async def _transcript(client: RuntimeClient, worker_id: str) -> list[TranscriptEntry]:
    return [e async for e in client.iter_transcript(worker_id)]


def _streamed(events: list[Event], run_id: str) -> str:
    return "".join(
        e.payload.text for e in events if e.run_id == run_id and isinstance(e.payload, TextDelta)
    )


def _assert_partial_committed(
    events: list[Event], entry: TranscriptEntry, run_id: str, state: RunState
) -> None:
    """``entry`` is the run's incomplete answer: announced by MessageCommitted, before the run's
    RunFinished, holding exactly the text the run streamed."""
    kinds = [type(e.payload) for e in events if e.run_id == run_id]
    committed = [
        e.payload.entry
        for e in events
        if e.run_id == run_id and isinstance(e.payload, MessageCommitted)
    ]
    assert committed == [entry]
    assert kinds.index(MessageCommitted) < kinds.index(RunFinished)
    assert entry.message.role is Role.ASSISTANT
    assert entry.message.incomplete is True
    reason = "cancelled" if state is RunState.CANCELLED else "interrupted"
    assert entry.message.stop_reason == reason
    assert entry.message.tool_calls == ()
    assert entry.message.text == _streamed(events, run_id)
    assert entry.message.text  # something was said before the cut


async def test_cancel_run_commits_the_partial_answer_and_counts_its_usage(
    client: RuntimeClient,
) -> None:
    w = (await client.create_worker(profile="very-slow")).worker
    accepted = await client.send_input(w.worker_id, LONG)
    await _deltas(client, w.worker_id, accepted.seq, 2)

    cancelled = await client.cancel_run(accepted.run.run_id)

    assert cancelled.state is RunState.CANCELLED
    transcript = await _transcript(client, w.worker_id)
    assert [e.message.role for e in transcript] == [Role.USER, Role.ASSISTANT]
    assert transcript[0].message.incomplete is False
    events = await _events(client, w.worker_id)
    _assert_partial_committed(events, transcript[1], accepted.run.run_id, RunState.CANCELLED)
    assert LONG.startswith(transcript[1].message.text)
    # the echo provider reports the prompt's tokens (its words) before the first word
    assert cancelled.usage.input_tokens == 200
    assert (await client.get_usage(w.worker_id)).usage.input_tokens == 200
    assert (await client.get_worker(w.worker_id)).usage.input_tokens == 200

    # the next run's prompt holds the partial answer: 200 words + the partial's words + 1
    nxt = await client.send_input(w.worker_id, "again")
    done = await client.wait_run(nxt.run.run_id, timeout=BOUND)
    assert done.state is RunState.COMPLETED
    partial_words = len(transcript[1].message.text.split())
    assert done.usage.input_tokens == 200 + partial_words + 1


async def test_interrupt_and_stop_worker_commit_the_partial_answer(client: RuntimeClient) -> None:
    w = (await client.create_worker(profile="very-slow")).worker
    first = await client.send_input(w.worker_id, LONG)
    await _deltas(client, w.worker_id, first.seq, 2)

    second = await client.send_input(w.worker_id, LONG, busy_policy=BusyPolicy.INTERRUPT)
    assert (await client.wait_run(first.run.run_id, timeout=BOUND)).state is RunState.CANCELLED
    await _deltas(client, w.worker_id, second.seq, 2)
    stopped = await client.stop_worker(w.worker_id)

    assert stopped.state is WorkerState.STOPPED
    assert (await client.get_run(second.run.run_id)).state is RunState.CANCELLED
    transcript = await _transcript(client, w.worker_id)
    roles = [e.message.role for e in transcript]
    assert roles == [Role.USER, Role.ASSISTANT, Role.USER, Role.ASSISTANT]
    events = await _events(client, w.worker_id)
    _assert_partial_committed(events, transcript[1], first.run.run_id, RunState.CANCELLED)
    _assert_partial_committed(events, transcript[3], second.run.run_id, RunState.CANCELLED)


async def test_shutdown_commits_the_partial_answer_as_interrupted(serve: ServeFactory) -> None:
    served = await serve()
    client = served.client
    w = (await client.create_worker(profile="very-slow")).worker
    accepted = await client.send_input(w.worker_id, LONG)
    await _deltas(client, w.worker_id, accepted.seq, 2)

    await served.runtime.close(grace_s=0.01)

    transcript = (await served.runtime.get_transcript(w.worker_id)).items
    assert [e.message.role.value for e in transcript] == ["user", "assistant"]
    partial = transcript[1].message
    assert partial.incomplete is True
    assert partial.stop_reason is not None
    assert partial.stop_reason.value == "interrupted"
    run = await served.runtime.get_run(accepted.run.run_id)
    assert run.state.value == "INTERRUPTED"
    assert run.usage.input_tokens == 200


# --- providers over real HTTP ---------------------------------------------------------------


def _openai_chunk(content: str) -> dict[str, Any]:
    return {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": None}]}


def _openai_reply(*texts: str, hang: bool) -> Reply:
    chunks: list[Any] = [_openai_chunk(t) for t in texts]
    if not hang:
        chunks += [
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            {"choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 2}},
            "[DONE]",
        ]
    return Reply(body=sse(*chunks), then="hang" if hang else "end")


def _anthropic_reply(*texts: str, hang: bool) -> Reply:
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": "msg_1",
                    "type": "message",
                    "role": "assistant",
                    "content": [],
                    "model": "m",
                    "stop_reason": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        )
    ]
    if texts:
        events.append(
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        )
    for t in texts:
        delta = {"type": "text_delta", "text": t}
        events.append(
            ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
        )
    if not hang:
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn"},
                    "usage": {"output_tokens": 3},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
    body = b"".join(f"event: {k}\ndata: {json.dumps(d)}\n\n".encode() for k, d in events)
    return Reply(body=body, then="hang" if hang else "end")


async def _remote_worker(
    serve: ServeFactory, provider: LoopbackServer, kind: str
) -> tuple[RuntimeClient, str]:
    base_url = provider.url + ("/v1" if kind == "openai_chat" else "")
    config = {
        "providers": {"loop": {"kind": kind, "base_url": base_url, "max_retries": 0}},
        "profiles": {"remote": {"provider": "loop", "model": "test-model"}},
    }
    client = (await serve(config=config)).client
    return client, (await client.create_worker(profile="remote")).worker.worker_id


async def _cancel_after_deltas(
    client: RuntimeClient, worker_id: str, text: str, deltas: int, provider: LoopbackServer
) -> str:
    accepted = await client.send_input(worker_id, text)
    if deltas:
        await _deltas(client, worker_id, accepted.seq, deltas)
    else:  # nothing will stream: wait until the provider has the request
        await eventually(lambda: bool(provider.requests), within=BOUND, what="the request")
    cancelled = await client.cancel_run(accepted.run.run_id)
    assert cancelled.state is RunState.CANCELLED
    await asyncio.wait_for(provider.disconnected.wait(), BOUND)
    return accepted.run.run_id


async def test_openai_next_request_carries_the_partial_answer(serve: ServeFactory) -> None:
    replies = [_openai_reply("Hel", "lo, wor", hang=True), _openai_reply("Fine.", hang=False)]
    async with LoopbackServer(replies) as provider:
        client, wid = await _remote_worker(serve, provider, "openai_chat")
        run_id = await _cancel_after_deltas(client, wid, "say hello", 2, provider)

        transcript = await _transcript(client, wid)
        _assert_partial_committed(
            await _events(client, wid), transcript[1], run_id, RunState.CANCELLED
        )
        assert transcript[1].message.text == "Hello, wor"
        # OpenAI reports usage only at the end of a stream: nothing was reported, nothing counted
        assert (await client.get_run(run_id)).usage.total_tokens == 0

        nxt = await client.send_input(wid, "go on")
        assert (await client.wait_run(nxt.run.run_id, timeout=BOUND)).state is RunState.COMPLETED
        assert provider.requests[1].json()["messages"] == [
            {"role": "user", "content": "say hello"},
            {"role": "assistant", "content": "Hello, wor"},
            {"role": "user", "content": "go on"},
        ]


async def test_anthropic_next_request_carries_the_partial_answer(serve: ServeFactory) -> None:
    replies = [_anthropic_reply("Hel", "lo, wor", hang=True), _anthropic_reply("Ok", hang=False)]
    async with LoopbackServer(replies) as provider:
        client, wid = await _remote_worker(serve, provider, "anthropic")
        run_id = await _cancel_after_deltas(client, wid, "say hello", 2, provider)

        transcript = await _transcript(client, wid)
        _assert_partial_committed(
            await _events(client, wid), transcript[1], run_id, RunState.CANCELLED
        )
        assert transcript[1].message.text == "Hello, wor"
        # message_start reported the prompt's usage before the cut: it counts
        run = await client.get_run(run_id)
        assert (run.usage.input_tokens, run.usage.output_tokens) == (12, 1)
        assert (await client.get_usage(wid)).usage.input_tokens == 12

        nxt = await client.send_input(wid, "go on")
        assert (await client.wait_run(nxt.run.run_id, timeout=BOUND)).state is RunState.COMPLETED
        assert provider.requests[1].json()["messages"] == [
            {"role": "user", "content": [{"type": "text", "text": "say hello"}]},
            {"role": "assistant", "content": [{"type": "text", "text": "Hello, wor"}]},
            {"role": "user", "content": [{"type": "text", "text": "go on"}]},
        ]


async def test_an_empty_partial_commits_nothing_and_the_history_stays_valid(
    serve: ServeFactory,
) -> None:
    replies = [_anthropic_reply(hang=True), _anthropic_reply("Ok", hang=False)]
    async with LoopbackServer(replies) as provider:
        client, wid = await _remote_worker(serve, provider, "anthropic")
        run_id = await _cancel_after_deltas(client, wid, "say hello", 0, provider)

        transcript = await _transcript(client, wid)
        assert [e.message.role for e in transcript] == [Role.USER]
        events = await _events(client, wid)
        assert not [e for e in events if isinstance(e.payload, MessageCommitted)]

        nxt = await client.send_input(wid, "go on")
        assert (await client.wait_run(nxt.run.run_id, timeout=BOUND)).state is RunState.COMPLETED
        # two user messages in a row become one user turn: the roles still alternate
        assert provider.requests[1].json()["messages"] == [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "say hello"},
                    {"type": "text", "text": "go on"},
                ],
            },
        ]
        # whether message_start arrived before the cut is a race; the run finished either way
        assert (await client.get_run(run_id)).state is RunState.CANCELLED
