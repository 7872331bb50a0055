"""Open event subscriptions are bounded over the whole runtime (``max_subscribers``).

Each open stream holds a buffer and a server-side call (about 25 KB while idle): 20,000 of them
took a served runtime to 584 MB, and nothing stopped a client from opening more until the process
ran out of memory. One more than the limit is RESOURCE_EXHAUSTED / TOO_MANY_SUBSCRIBERS on both
subscription RPCs and in-process; a closed stream frees its slot; GetRuntime reports the bound.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import grpc
import pytest
from serving import ServeFactory, eventually

from runtime_client import Event, RuntimeClient, TooManySubscribers
from runtime_client.api import observation_service_pb2 as obs_pb
from runtime_client.api import observation_service_pb2_grpc as obs_grpc
from runtime_server.embedded import EmbeddedRuntime
from runtime_server.model import Limits

LIMIT = 3
BOUND = 20.0  # seconds: a safety net only


async def _first(stream: AsyncIterator[Event]) -> Event:
    return await asyncio.wait_for(anext(stream), BOUND)


async def test_one_more_stream_than_the_limit_is_refused_and_a_closed_one_frees_a_slot(
    serve: ServeFactory,
) -> None:
    served = await serve(limits=Limits(max_subscribers=LIMIT, heartbeat_interval_seconds=0.05))
    client = served.client
    info = await client.get_runtime()
    assert info.limits.max_subscribers == LIMIT

    open_streams = [
        client.subscribe(include_heartbeats=True, batched=batched)
        for batched in (True, False, True)
    ]
    for stream in open_streams:
        await _first(stream)  # a heartbeat: the stream is open on the server
    assert (await client.get_runtime()).subscribers == LIMIT

    for batched in (True, False):
        extra = client.subscribe(include_heartbeats=True, batched=batched, resume=False)
        with pytest.raises(TooManySubscribers) as refused:
            await _first(extra)
        assert refused.value.limit == LIMIT
        assert refused.value.code.name == "RESOURCE_EXHAUSTED"

    # the refusal harmed no open stream, and closing one lets the next one in
    for stream in open_streams:
        await _first(stream)
    await open_streams.pop().aclose()
    await eventually(lambda: _subscribers_are(client, LIMIT - 1))
    again = client.subscribe(include_heartbeats=True)
    await _first(again)
    for stream in (*open_streams, again):
        await stream.aclose()


async def test_a_raw_grpc_caller_gets_the_typed_status(serve: ServeFactory) -> None:
    # What grpcurl and other-language clients see: the reason in the status details.
    served = await serve(limits=Limits(max_subscribers=1, heartbeat_interval_seconds=0.05))
    held = served.client.subscribe(include_heartbeats=True)
    await _first(held)
    async with grpc.aio.insecure_channel(served.target) as channel:
        call = obs_grpc.ObservationServiceStub(channel).SubscribeEvents(
            obs_pb.SubscribeEventsRequest(from_now=True)
        )
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await asyncio.wait_for(call.read(), BOUND)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "1 open event subscriptions" in (refused.value.details() or "")
    await held.aclose()


async def test_the_embedded_handle_refuses_alike() -> None:
    async with await EmbeddedRuntime.open(
        limits=Limits(max_subscribers=1, heartbeat_interval_seconds=0.05)
    ) as handle:
        held = handle.subscribe(include_heartbeats=True)
        await _first(held)
        with pytest.raises(TooManySubscribers) as refused:
            await _first(handle.subscribe(include_heartbeats=True))
        assert refused.value.limit == 1
        with contextlib.suppress(Exception):
            await held.aclose()


async def _subscribers_are(client: RuntimeClient, n: int) -> bool:
    return (await client.get_runtime()).subscribers == n
