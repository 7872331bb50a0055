"""The per-event stream (SubscribeEvents): one message per event, what grpcurl and other-language
clients use. Through a real grpc.aio server and raw gRPC clients, this proves what that path must
keep:

* a backlog larger than anything in flight arrives complete, in seq order, once each, and the live
  tail after it without a gap (messages back to back, the subscription's buffer drained between);
* a client that goes away while writes are in flight — cancelled, or its channel closed — ends its
  stream quietly (no INTERNAL diagnostic, no "unexpected error" log line) and releases its
  subscription; so does the server stopping under streams that are writing.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from serving import Served, ServeFactory, eventually

from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc
from runtime_client.api import types_pb2 as pb
from runtime_server.model import Limits

BOUND = 30.0  # seconds: a safety net only
WORDS = 150


def _words(n: int) -> str:
    return " ".join(f"w{i}" for i in range(n))


async def _backlog(served: Served, runs: int) -> tuple[str, int]:
    """A worker with ``runs`` finished echo runs: several hundred committed events."""
    client = served.client
    wid = (await client.create_worker(profile="echo")).worker.worker_id

    async def idle() -> bool:
        return bool((await client.get_worker(wid)).state.name == "IDLE")

    for _ in range(runs):
        await client.send_input(wid, _words(WORDS))
        await eventually(idle, within=BOUND)
    return wid, (await client.get_runtime()).last_seq


async def test_a_backlog_and_the_live_tail_arrive_in_order_once_each(serve: ServeFactory) -> None:
    served = await serve(limits=Limits(heartbeat_interval_seconds=0))
    wid, last = await _backlog(served, 3)
    assert last > 3 * WORDS  # more events than the subscription's replay page holds in flight

    async with grpc.aio.insecure_channel(served.target) as channel:
        call = ogrpc.ObservationServiceStub(channel).SubscribeEvents(
            opb.SubscribeEventsRequest(after_seq=0)
        )
        seqs: list[int] = []
        async with asyncio.timeout(BOUND):
            while len(seqs) < last:
                event: pb.Event = await call.read()
                seqs.append(event.seq)
        assert seqs == list(range(1, last + 1))  # every seq, in order, none twice

        # the live tail continues from there without a gap while the run streams
        accepted = await served.client.send_input(wid, _words(WORDS))
        async with asyncio.timeout(BOUND):
            while True:
                event = await call.read()
                assert event.seq == seqs[-1] + 1, (seqs[-1], event.seq)
                seqs.append(event.seq)
                if event.HasField("run_finished"):
                    assert event.run_finished.run.run_id == accepted.run.run_id
                    break
        call.cancel()


@pytest.mark.parametrize("leave", ["cancel", "close the channel"])
async def test_a_client_leaving_mid_write_is_not_an_error(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture, leave: str
) -> None:
    served = await serve(limits=Limits(heartbeat_interval_seconds=0))
    await _backlog(served, 3)
    caplog.set_level(logging.WARNING)

    async def one() -> None:
        channel = grpc.aio.insecure_channel(served.target)
        call = ogrpc.ObservationServiceStub(channel).SubscribeEvents(
            opb.SubscribeEventsRequest(after_seq=0)
        )
        for _ in range(3):  # the server is writing the backlog back to back
            await call.read()
        if leave == "cancel":
            call.cancel()
            await channel.close()
        else:
            await channel.close(grace=None)

    async with asyncio.timeout(BOUND):
        for _ in range(4):
            await asyncio.gather(*(one() for _ in range(8)))

    async def released() -> bool:
        return bool((await served.client.get_runtime()).subscribers == 0)

    await eventually(released, within=BOUND)
    diagnostics = (await served.client.list_diagnostics()).items
    assert not [d for d in diagnostics if d.code == "RPC_INTERNAL_ERROR"]
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]


async def test_the_server_stopping_mid_write_is_not_an_error(
    serve: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    served = await serve(limits=Limits(heartbeat_interval_seconds=0))
    await _backlog(served, 3)
    caplog.set_level(logging.WARNING)
    channels = [grpc.aio.insecure_channel(served.target) for _ in range(8)]
    calls = [
        ogrpc.ObservationServiceStub(c).SubscribeEvents(opb.SubscribeEventsRequest(after_seq=0))
        for c in channels
    ]
    async with asyncio.timeout(BOUND):
        for call in calls:
            await call.read()
        await served.server.stop(0)
    for c in channels:
        await c.close()
    assert not [r for r in caplog.records if "unexpected error" in r.getMessage()]
