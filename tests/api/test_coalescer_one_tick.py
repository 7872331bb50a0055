"""The batch coalescer (grpc/_coalesce) after issue 15's round on the loop: one callback per loop
step serves every gathering subscription (streams are not woken per step to look at their own
buffers), a wait ends only after two quiet loop steps — so a run's SendInput events and its
deltas, one step apart, travel in one message — and a lone event is still let go promptly."""

from __future__ import annotations

import asyncio
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
    await store.open("rt-coalesce-tick")
    return EventLog(store, last_seq=0, buffer_limit=10_000)


async def test_one_callback_per_loop_step_serves_every_gathering_subscription(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_coalesce, "MAX_WAIT", 30.0)
    ticks = 0
    original = _coalesce.Coalescer._tick

    def counting(self: _coalesce.Coalescer) -> None:
        nonlocal ticks
        ticks += 1
        original(self)

    monkeypatch.setattr(_coalesce.Coalescer, "_tick", counting)
    log = await opened_log()
    workers = [f"w{i}" for i in range(16)]
    subs = [log.subscribe(worker_id=w) for w in workers]
    steps = 30

    async def produce() -> None:
        for _ in range(steps):
            for w in workers:
                log.append_one(w, "r1", TextDelta("tok"))
            await asyncio.sleep(0)

    for w in workers:
        log.append_one(w, "r1", TextDelta("first"))
    producer = asyncio.create_task(produce())
    await asyncio.gather(*(_coalesce.gather_more(s, 10_000) for s in subs))
    assert producer.done()
    for s in subs:
        assert len(s.drain(10_000)) == steps + 1  # each waited for the whole burst
    # One tick a step for all 16 (the burst plus the quiet steps that end it), where each
    # subscription used to wake every step on its own: 16 times as many.
    assert ticks <= steps + 4
    for s in subs:
        s.close()


async def test_a_lone_event_is_let_go_after_two_quiet_steps(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_coalesce, "MAX_WAIT", 30.0)
    log = await opened_log()
    sub = log.subscribe(worker_id="w1")
    log.append_one("w1", "r1", TextDelta("alone"))
    steps = 0
    waiting = asyncio.create_task(_coalesce.gather_more(sub, 255))
    while not waiting.done():
        steps += 1
        await asyncio.sleep(0)
    assert steps <= 4
    assert len(sub.drain(255)) == 1
    sub.close()


async def test_a_cancelled_wait_leaves_the_others_served(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_coalesce, "MAX_WAIT", 30.0)
    log = await opened_log()
    a, b = log.subscribe(worker_id="a"), log.subscribe(worker_id="b")
    log.append_one("a", "r", TextDelta("x"))
    log.append_one("b", "r", TextDelta("y"))
    gone = asyncio.create_task(_coalesce.gather_more(a, 255))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.wait_for(_coalesce.gather_more(b, 255), 10)
    assert gone.cancelled()
    a.close()
    b.close()


async def test_a_short_runs_events_travel_in_one_message(serve: ServeFactory) -> None:
    # SendInput's events (RunQueued .. WorkerStateChanged) are published one loop step before the
    # run's task brings its first delta; with one quiet step ending the wait they went alone.
    served = await serve()
    created = await served.client.create_worker(profile="echo")
    wid = created.worker.worker_id
    async with grpc.aio.insecure_channel(served.target) as channel:
        stub = ogrpc.ObservationServiceStub(channel)
        call = stub.SubscribeEventBatches(
            opb.SubscribeEventsRequest(worker_id=wid, after_seq=created.seq)
        )
        per_run = []
        for _ in range(4):
            accepted = await served.client.send_input(wid, "hello world")
            messages = 0
            kinds: list[str] = []
            async for batch in call:
                messages += 1
                kinds += [str(e.WhichOneof("payload")) for e in batch.events if e.seq]
                if any(
                    e.HasField("run_finished") and e.run_finished.run.run_id == accepted.run.run_id
                    for e in batch.events
                ):
                    break
            assert kinds[0] == "run_queued"
            assert kinds.count("text_delta") == 2
            per_run.append(messages)
        call.cancel()
    # (the call starts at its first read: the first run's first events come from the replay)
    assert per_run[1:] == [1, 1, 1]


def test_a_finished_loops_coalescer_is_released() -> None:
    # one Coalescer per event loop, in a weak mapping: it must not keep its loop alive
    import gc

    async def one_gather() -> None:
        log = await opened_log()
        sub = log.subscribe(worker_id="w1")
        log.append_one("w1", "r1", TextDelta("x"))
        await _coalesce.gather_more(sub, 255)
        sub.close()

    gc.collect()
    before = len(_coalesce._coalescers)
    for _ in range(3):
        asyncio.run(one_gather())
    gc.collect()
    assert len(_coalesce._coalescers) <= before
