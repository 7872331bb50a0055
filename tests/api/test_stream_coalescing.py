"""SubscribeEventBatches waits a moment for the events a run is still producing (grpc/_coalesce):
``gather_more`` returns once a loop step brought no new event, when the batch is full, or after
``MAX_WAIT`` — a real EventLog on a real MemoryStore, producers appending one event per loop
step as a run's stream does. Through a real server, a run's events then arrive in fewer
messages than events, all of them, in order."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

import grpc.aio
import pytest

from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc
from runtime_server.grpc import coalesce as _coalesce
from runtime_server.model import TextDelta
from runtime_server.runtime import EventLog
from runtime_server.store import MemoryStore

if TYPE_CHECKING:
    from serving import ServeFactory


async def opened_log() -> EventLog:
    store = MemoryStore()
    await store.open("rt-coalesce")
    return EventLog(store, last_seq=0, buffer_limit=10_000)


async def produce(log: EventLog, n: int) -> None:
    for _ in range(n):
        log.append_one("w1", "r1", TextDelta("tok"))
        await asyncio.sleep(0)  # one event per loop step, like a run's stream


async def test_waits_while_events_keep_coming_and_stops_when_they_stop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_coalesce, "MAX_WAIT", 30.0)  # only the "nothing new" rule ends it
    log = await opened_log()
    sub = log.subscribe(worker_id="w1")
    producer = asyncio.create_task(produce(log, 20))
    await asyncio.sleep(0)
    first = await sub.next()
    assert first is not None
    await _coalesce.gather_more(sub, 255)
    assert producer.done()  # it waited for the whole burst...
    assert len(sub.drain(255)) == 19  # ...and the batch holds all of it
    await _coalesce.gather_more(sub, 255)  # nothing coming: returns after one step
    sub.close()


async def test_a_full_batch_or_max_wait_ends_the_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    log = await opened_log()
    sub = log.subscribe(worker_id="w1")
    endless = asyncio.create_task(produce(log, 1_000_000))
    try:
        monkeypatch.setattr(_coalesce, "MAX_WAIT", 30.0)
        await asyncio.wait_for(_coalesce.gather_more(sub, 10), 10)  # full: returns
        assert sub.buffered >= 10
        sub.drain(10_000)
        monkeypatch.setattr(_coalesce, "MAX_WAIT", 0.01)
        # never full, never quiet: MAX_WAIT ends it
        await asyncio.wait_for(_coalesce.gather_more(sub, 10**9), 10)
    finally:
        endless.cancel()
        sub.close()


async def test_a_runs_events_arrive_in_fewer_messages_all_in_order(serve: ServeFactory) -> None:
    served = await serve()
    created = await served.client.create_worker(profile="echo")
    wid = created.worker.worker_id
    async with grpc.aio.insecure_channel(served.target) as channel:
        stub = ogrpc.ObservationServiceStub(channel)
        call = stub.SubscribeEventBatches(
            opb.SubscribeEventsRequest(worker_id=wid, after_seq=created.seq)
        )
        await asyncio.sleep(0)
        accepted = await served.client.send_input(wid, " ".join(["tok"] * 50))
        messages, seqs = 0, []
        async for batch in call:
            messages += 1
            seqs += [e.seq for e in batch.events if e.seq]
            if any(
                e.HasField("run_finished") and e.run_finished.run.run_id == accepted.run.run_id
                for e in batch.events
            ):
                break
        call.cancel()
    assert seqs == list(range(created.seq + 1, seqs[-1] + 1))  # every event, in order
    assert messages < len(seqs) / 2  # a 50-word run was one message per event, nearly


async def test_the_per_event_stream_sends_a_runs_burst_back_to_back(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SubscribeEvents waits like the batches do, then sends each event as its own message: the
    run's first delta reaches the client only once the run produced its last event (the
    RunFinished's own time is before the delta's arrival), and the stream still carries one
    message per event, every one, in order."""
    monkeypatch.setattr(_coalesce, "MAX_WAIT", 30.0)  # only "two quiet loop steps" ends the wait
    served = await serve()
    created = await served.client.create_worker(profile="echo")
    wid = created.worker.worker_id
    async with grpc.aio.insecure_channel(served.target) as channel:
        stub = ogrpc.ObservationServiceStub(channel)
        call = stub.SubscribeEvents(
            opb.SubscribeEventsRequest(worker_id=wid, after_seq=created.seq)
        )
        await asyncio.sleep(0)
        accepted = await served.client.send_input(wid, " ".join(["tok"] * 50))
        seqs: list[int] = []
        first_delta_at = 0.0
        async for event in call:
            if event.HasField("text_delta") and not first_delta_at:
                first_delta_at = time.time()
            seqs.append(event.seq)
            if (
                event.HasField("run_finished")
                and event.run_finished.run.run_id == accepted.run.run_id
            ):
                finished_at = event.time.seconds + event.time.nanos * 1e-9
                break
        call.cancel()
    assert seqs == list(range(created.seq + 1, seqs[-1] + 1))  # every event, one message each
    assert [s for s in seqs if s] == seqs
    assert first_delta_at >= finished_at  # the burst went out after the run produced it all
