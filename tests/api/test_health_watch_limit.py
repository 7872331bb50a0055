"""Anonymous health watches are bounded.

Health needs no token, so ``Health.Watch`` was the one stream an anonymous caller could hold open
— about 20 KB of server memory each, with no bound at all: a caller that reaches the port could
exhaust the server's memory even with a token configured. Now open watches are bounded by
``limits.max_subscribers`` (counted apart from event subscriptions); one more is
RESOURCE_EXHAUSTED / TOO_MANY_SUBSCRIBERS, ``Check`` always answers, and a closed watch frees its
place. A real grpc.aio server with auth on, called with no token by a raw health stub.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving import error_info, eventually

from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0
SERVING = health_pb2.HealthCheckResponse.SERVING


async def test_watches_past_the_bound_are_refused_and_check_still_answers(
    serve: ServeFactory,
) -> None:
    served = await serve(limits=Limits(max_subscribers=3), auth_token="tok-health-limit")
    async with grpc.aio.insecure_channel(served.target) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        request = health_pb2.HealthCheckRequest(service="")
        watches: list[Any] = []
        async with asyncio.timeout(BOUND):
            for _ in range(3):
                call = stub.Watch(request)
                assert (await call.read()).status == SERVING
                watches.append(call)
            extra = stub.Watch(request)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await extra.read()
        assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(refused.value)
        assert (info.reason, dict(info.metadata)) == ("TOO_MANY_SUBSCRIBERS", {"limit": "3"})
        assert (await stub.Check(request, timeout=BOUND)).status == SERVING

        # event subscriptions are counted apart: the client still subscribes
        await served.client.create_worker()
        async with asyncio.timeout(BOUND):
            async for _event in served.client.subscribe(after_seq=0):
                break

        watches.pop().cancel()  # a closed watch frees its place

        async def again() -> bool:
            call = stub.Watch(request)
            try:
                return bool((await call.read()).status == SERVING)
            except grpc.aio.AioRpcError:
                return False
            finally:
                call.cancel()

        await eventually(again, within=BOUND, what="a watch after one was closed")
        for call in watches:
            call.cancel()
