"""The Runtime end to end on a real model: gRPC API → Runtime → engine → llama.cpp (SmolLM2-135M).

Assertions are on structure (event kinds and order, states, tool names, usage present), never on
prose or speed; timeouts are safety nets. Temperature 0 and a fixed seed keep answers repeatable.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from engine.testing import LlamaServer
from runtime_client import (
    Event,
    MessageCommitted,
    Role,
    RunFinished,
    RunState,
    RuntimeClient,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    WorkerStateChanged,
)

if TYPE_CHECKING:
    from serving import ServeFactory

pytestmark = pytest.mark.live

RUN_TIMEOUT_S = 120.0  # safety net only: a run here takes seconds


async def run_events(client: RuntimeClient, worker_id: str, text: str) -> tuple[str, list[Event]]:
    """Send ``text`` and collect the run's events up to and including its RunFinished."""
    accepted = await client.send_input(worker_id, text)
    return accepted.run.run_id, await collect(client, worker_id, accepted.seq)


async def collect(client: RuntimeClient, worker_id: str, after_seq: int) -> list[Event]:
    events: list[Event] = []
    stream = client.subscribe(worker_id, after_seq=after_seq)
    async with asyncio.timeout(RUN_TIMEOUT_S):
        async for event in stream:
            events.append(event)
            if isinstance(event.payload, RunFinished):
                break
    await stream.aclose()
    return events


def payloads(events: list[Event], kind: type) -> list[Any]:
    return [e.payload for e in events if isinstance(e.payload, kind)]


async def test_text_run_streams_deltas_and_completes_with_usage(
    serve: ServeFactory, live_config: dict[str, Any]
) -> None:
    served = await serve(config=live_config)
    client = served.client
    created = await client.create_worker(profile="smollm2-chat")
    worker_id = created.worker.worker_id

    run_id, events = await run_events(client, worker_id, "What is the capital of France?")

    deltas = payloads(events, TextDelta)
    assert deltas, "the answer must arrive as streamed TextDelta events"
    [finished] = payloads(events, RunFinished)
    run = finished.run
    assert run.run_id == run_id
    assert run.state is RunState.COMPLETED, run.error
    assert run.usage.input_tokens > 0
    assert 0 < run.usage.output_tokens <= 64
    transcript = (await client.get_transcript(worker_id)).items
    assert [e.message.role for e in transcript] == [Role.USER, Role.ASSISTANT]
    assert transcript[1].message.text == "".join(d.text for d in deltas)
    assert transcript[1].message.text.strip()


async def test_tool_round_on_the_shipped_smollm2_profile(
    serve: ServeFactory, live_config: dict[str, Any]
) -> None:
    served = await serve(config=live_config)
    client = served.client
    created = await client.create_worker(profile="smollm2")
    worker_id = created.worker.worker_id

    _, events = await run_events(client, worker_id, "What time is it now?")

    kinds = [type(e.payload) for e in events]
    [started] = payloads(events, ToolCallStarted)
    [done] = payloads(events, ToolCallFinished)
    assert started.tool_name == done.tool_name == "clock"
    assert json.loads(started.arguments or "{}") == {}
    assert done.call_id == started.call_id
    assert not done.is_error
    assert done.result[:2] == "20"  # an ISO 8601 timestamp from the real clock tool
    committed = [p.entry.message for p in payloads(events, MessageCommitted)]
    assert [m.role for m in committed] == [Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    call_at = kinds.index(ToolCallStarted)
    assert kinds.index(ToolCallFinished) > call_at
    assert TextDelta in kinds[call_at:]  # the final answer streams after the tool result
    [finished] = payloads(events, RunFinished)
    assert finished.run.state is RunState.COMPLETED, finished.run.error
    assert finished.run.usage.input_tokens > 0
    assert finished.run.usage.output_tokens > 0
    assert committed[2].text.strip()
    assert not committed[2].tool_calls

    # The transcript is what the model produced and saw — the profile's examples and prefill are
    # a documented preamble, never stored.
    transcript = [e.message for e in (await client.get_transcript(worker_id)).items]
    assert [m.role for m in transcript] == [Role.USER, Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    assert transcript[0].text == "What time is it now?"
    assert transcript[1].tool_calls[0].call_id == started.call_id
    assert transcript[2].tool_call_id == started.call_id
    assert not any("<tool_call>" in m.text for m in transcript)


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10.0) as c:
        yield c


async def test_cancel_a_live_run_mid_stream(
    serve: ServeFactory, live_config: dict[str, Any], llama: LlamaServer, http: httpx.AsyncClient
) -> None:
    served = await serve(config=live_config)
    client = served.client
    created = await client.create_worker(profile="ramble")
    worker_id = created.worker.worker_id
    accepted = await client.send_input(worker_id, "Write a long story about a cat.")
    run_id = accepted.run.run_id

    stream = client.subscribe(worker_id, after_seq=accepted.seq)
    async with asyncio.timeout(RUN_TIMEOUT_S):
        async for event in stream:
            if isinstance(event.payload, TextDelta):
                break  # the model is generating: cancel now
            assert not isinstance(event.payload, RunFinished), event.payload.run
    await stream.aclose()

    cancelled = await client.cancel_run(run_id)
    assert cancelled.state is RunState.CANCELLED
    assert (await client.cancel_run(run_id)).state is RunState.CANCELLED  # idempotent

    async def slot_idle() -> bool:
        slots = (await http.get(llama.base_url + "/slots")).json()
        return not any(slot.get("is_processing") for slot in slots)

    # llama.cpp stops generating: the HTTP stream was closed (1024 tokens would take far longer).
    async with asyncio.timeout(10.0):
        while not await slot_idle():  # noqa: ASYNC110  # polling another process's state
            await asyncio.sleep(0.05)

    # Exactly one terminal event for the run, and no output of it after that.
    page = await client.list_events(worker_id=worker_id, after_seq=accepted.seq, page_size=1000)
    of_run = [e for e in page.events if e.run_id == run_id]
    finished = [e for e in of_run if isinstance(e.payload, RunFinished)]
    assert len(finished) == 1
    end = finished[0].payload
    assert isinstance(end, RunFinished)
    assert end.run.state is RunState.CANCELLED
    after = of_run[of_run.index(finished[0]) + 1 :]
    assert all(isinstance(e.payload, WorkerStateChanged) for e in after), after

    # The next input works on the same worker.
    next_id, events = await run_events(client, worker_id, "Say hello.")
    [done] = payloads(events, RunFinished)
    assert done.run.run_id == next_id
    assert done.run.state is RunState.COMPLETED, done.run.error
    assert payloads(events, TextDelta)
    roles = [e.message.role for e in (await client.get_transcript(worker_id)).items]
    assert roles[0] is Role.USER
    assert roles[-1] is Role.ASSISTANT
