"""SubscribeEventBatches through the real server with the real client: the same stream as
SubscribeEvents (replay then tail, gap-free, lagging cut and resume, cursor errors, heartbeats),
with every event that is ready at send time in one message — bounded by count and size."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from serving import assert_gap_free, error_info, eventually

from runtime_client import CursorAhead, Event, RunFinished, RunState, RuntimeClient, TextDelta
from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc
from runtime_client.api import types_pb2 as pb
from runtime_server.grpc import MAX_BATCH_EVENTS
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0  # seconds: a safety net only, never a speed assertion
CONFIG: dict[str, Any] = {
    "profiles": {"fast": {"provider": "builtin", "options": {"delay_ms": 1}}},
}


def words(n: int, size: int = 0) -> str:
    return " ".join(f"w{i}" + "x" * size for i in range(n))


async def logged(client: RuntimeClient, worker_id: str = "", page_size: int = 0) -> list[pb.Event]:
    """Every retained event as ListEvents returns it (wire messages)."""
    out: list[pb.Event] = []
    cursor = 0
    while True:
        page = await client.list_events(after_seq=cursor, worker_id=worker_id, page_size=page_size)
        if not page.events:
            return out
        for e in page.events:
            assert e.raw is not None  # an event read from the wire keeps its message
            out.append(e.raw)
        cursor = page.next_after_seq


def batches_stub(channel: grpc.aio.Channel, **request: Any) -> Any:
    return ogrpc.ObservationServiceStub(channel).SubscribeEventBatches(
        opb.SubscribeEventsRequest(**request)
    )


async def read_batches_until_finished(
    call: Any, run_id: str, *, pause_after_first: float = 0.0
) -> list[opb.EventBatch]:
    """Read batches until ``run_id``'s RunFinished (heartbeat batches skipped)."""
    got: list[opb.EventBatch] = []
    async with asyncio.timeout(BOUND):
        while True:
            msg = await call.read()
            assert msg is not grpc.aio.EOF, "stream ended before RunFinished"
            assert msg.events, "a batch is never empty"
            if not msg.events[0].seq:
                assert len(msg.events) == 1, "a heartbeat is a batch of its own"
                continue
            got.append(msg)
            if len(got) == 1 and pause_after_first:
                await asyncio.sleep(pause_after_first)  # be briefly slower than the run
            if any(
                e.WhichOneof("payload") == "run_finished" and e.run_finished.run.run_id == run_id
                for e in msg.events
            ):
                return got


def flat(batches: list[opb.EventBatch]) -> list[pb.Event]:
    return [e for b in batches for e in b.events]


async def test_batches_are_gap_free_equal_to_list_events_and_group_ready_events(
    serve: ServeFactory,
) -> None:
    served = await serve(config=CONFIG)
    client = served.client
    created = await client.create_worker()  # echo: no delay between words
    w = created.worker.worker_id
    call = batches_stub(client.channel, worker_id=w, after_seq=created.seq)
    text = words(300)
    accepted = await client.send_input(w, text)
    # A reader that is briefly slower than the run: what piles up meanwhile comes in few messages.
    batches = await read_batches_until_finished(call, accepted.run.run_id, pause_after_first=0.05)
    call.cancel()

    events = flat(batches)
    assert_gap_free([e.seq for e in events])
    assert events == (await logged(client, w))[1:]  # the same wire events, after WorkerCreated
    assert max(len(b.events) for b in batches) > 1, [len(b.events) for b in batches]
    assert len(batches) < len(events)
    assert all(len(b.events) <= MAX_BATCH_EVENTS for b in batches)
    assert "".join(e.text_delta.text for e in events if e.HasField("text_delta")) == text

    # replay: a subscription from 0 after the fact gets the whole log, in full batches
    replay = batches_stub(client.channel, after_seq=0)
    replayed = await read_batches_until_finished(replay, accepted.run.run_id)
    replay.cancel()
    assert flat(replayed) == await logged(client)
    assert len(replayed[0].events) > 1


async def test_a_batch_stays_under_the_message_size_bound(serve: ServeFactory) -> None:
    # 256 kB messages: about 64 k characters of event text per batch, so the 200 events of a
    # 1 kB word each come in several batches of a few dozen, never in one message over the bound.
    bound = 256 * 1024
    served = await serve(config=CONFIG, limits=Limits(max_message_bytes=bound))
    client = served.client
    created = await client.create_worker()
    w = created.worker.worker_id
    accepted = await client.send_input(w, words(200, size=1000))
    run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert run.state is RunState.COMPLETED
    call = batches_stub(client.channel, worker_id=w, after_seq=created.seq)
    batches = await read_batches_until_finished(call, accepted.run.run_id)
    call.cancel()
    # (small pages: a ListEvents page is bounded by count only)
    assert flat(batches) == (await logged(client, w, page_size=20))[1:]
    sizes = [b.ByteSize() for b in batches]
    assert max(sizes) <= bound, sizes
    assert max(len(b.events) for b in batches) > 1
    assert len(batches) >= 4, "the size bound split the batches"


async def test_lagging_batch_subscriber_is_cut_with_its_last_seq_and_resumes(
    serve: ServeFactory,
) -> None:
    served = await serve(config=CONFIG, limits=Limits(subscriber_buffer_events=128))
    client = served.client
    w = (await client.create_worker(profile="fast")).worker.worker_id
    # never reads while the run goes on; no BDP probing, so its HTTP/2 window stays small
    lag_channel = grpc.aio.insecure_channel(served.target, options=[("grpc.http2.bdp_probe", 0)])
    try:
        laggard = batches_stub(lag_channel, after_seq=0)
        await eventually(lambda: served.runtime.info().subscribers == 1, within=BOUND)
        accepted = await client.send_input(w, words(400, size=1000))
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
        assert run.state is RunState.COMPLETED, run.error  # the run was not harmed

        before: list[opb.EventBatch] = []

        async def read_to_end() -> None:
            async with asyncio.timeout(BOUND):
                while (msg := await laggard.read()) is not grpc.aio.EOF:
                    before.append(msg)

        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_to_end()
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(caught.value)
        assert (info.reason, info.domain) == ("SUBSCRIBER_LAGGING", "worker-runtime")
        got = flat(before)
        assert got
        last_seq = int(info.metadata["last_seq"])
        assert last_seq == got[-1].seq

        resumed = batches_stub(lag_channel, after_seq=last_seq)
        rest = flat(await read_batches_until_finished(resumed, accepted.run.run_id))
        resumed.cancel()
    finally:
        await lag_channel.close()
    combined = got + rest
    assert_gap_free([e.seq for e in combined])
    assert combined == await logged(client)


async def test_heartbeats_are_batches_of_one_heartbeat(serve: ServeFactory) -> None:
    served = await serve(config=CONFIG, limits=Limits(heartbeat_interval_seconds=0.05))
    client = served.client
    await client.create_worker()
    head = (await client.get_runtime()).last_seq
    call = batches_stub(client.channel, from_now=True)
    async with asyncio.timeout(BOUND):
        for _ in range(3):
            msg = await call.read()
            assert len(msg.events) == 1
            beat = msg.events[0]
            assert (beat.seq, beat.WhichOneof("payload")) == (0, "heartbeat")
            assert beat.heartbeat.last_seq == head
    call.cancel()


async def test_cursor_errors_as_on_the_per_event_stream(serve: ServeFactory) -> None:
    served = await serve(config=CONFIG)
    client = served.client
    await client.create_worker()
    head = (await client.get_runtime()).last_seq
    stream = client.subscribe(after_seq=head + 10, resume=False)
    with pytest.raises(CursorAhead):
        await asyncio.wait_for(anext(stream), BOUND)
    call = batches_stub(client.channel, after_seq=head + 10)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call.read()
    assert caught.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert error_info(caught.value).reason == "CURSOR_AHEAD"


async def test_client_subscribe_batched_and_per_event_give_the_same_events(
    serve: ServeFactory,
) -> None:
    served = await serve(config=CONFIG)
    client = served.client
    a = (await client.create_worker()).worker.worker_id
    b = (await client.create_worker(profile="fast")).worker.worker_id
    await client.wait_run((await client.send_input(a, words(50))).run.run_id, timeout=BOUND)

    async def follow(batched: bool, run_id: list[str], into: list[Event]) -> None:
        stream = client.subscribe(after_seq=0, batched=batched, resume=False)
        async with contextlib.aclosing(stream):
            async for ev in stream:
                into.append(ev)
                if (
                    run_id
                    and isinstance(ev.payload, RunFinished)
                    and ev.payload.run.run_id == run_id[0]
                ):
                    return

    last_run: list[str] = []
    got: dict[bool, list[Event]] = {True: [], False: []}
    tasks = [asyncio.create_task(follow(flag, last_run, got[flag])) for flag in (True, False)]
    try:
        # both replay the first run, then tail the next ones live
        await eventually(lambda: served.runtime.info().subscribers >= 2, within=BOUND)
        await client.send_input(a, words(100))
        accepted = await client.send_input(b, words(100))
        last_run.append(accepted.run.run_id)
        async with asyncio.timeout(BOUND):
            await asyncio.gather(*tasks)
    finally:
        for task in tasks:
            task.cancel()
    batched, per_event = got[True], got[False]
    assert [(e.seq, e.raw) for e in batched] == [(e.seq, e.raw) for e in per_event]
    assert_gap_free([e.seq for e in batched])
    assert [e.raw for e in batched] == (await logged(client))[: len(batched)]
    assert any(isinstance(e.payload, TextDelta) and e.worker_id == b for e in batched)
