"""The shape baseline of ``make bench`` (``bench.shape``, issue 15 item 6) does exactly the RPC
shape it declares: per run one SendInput-sized unary call answered with the captured reply,
then the run's messages on a stream opened once — 18 per-event messages, or the same events'
bytes in K EventBatch messages — byte for byte what a real served runtime sent.

The bytes are captured from a real ``serve`` process (memory store, echo profile) and served by
a real grpc.aio server on 127.0.0.1 port 0. Counts and bytes only: never speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import grpc.aio
import pytest
from serving import ServeProcessFactory

from bench.shape import Shape, ShapeRuns, add_shape, capture, count_batches
from runtime_client.api import interaction_service_pb2 as interaction_pb
from runtime_client.api import observation_service_pb2 as observation_pb
from runtime_client.api import types_pb2 as pb

TEN_WORDS = " ".join(["tok"] * 10)
BOUND = 60.0  # a safety net on a loaded machine, not a speed assertion


@pytest.fixture
async def shape(serve_process: ServeProcessFactory) -> Shape:
    served = await serve_process(None, store="memory")
    return await capture(served.target, TEN_WORDS)


@pytest.fixture
async def shape_target(shape: Shape) -> AsyncIterator[str]:
    server = grpc.aio.server()
    add_shape(server, shape)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_the_capture_is_one_real_run_of_the_echo_agent(shape: Shape) -> None:
    """18 events, as the product streams a 10-word echo run: the previous run's trailing
    WorkerStateChanged (standing in for this run's), the run's own events, its 10 deltas, and
    RunFinished last; the request and reply are a real SendInput pair for that run."""
    events = [pb.Event.FromString(e) for e in shape.events]
    kinds = [e.WhichOneof("payload") for e in events]
    assert len(events) == 18
    assert kinds.count("text_delta") == 10
    assert kinds[0] == "worker_state_changed"
    assert kinds[-1] == "run_finished"
    seqs = [e.seq for e in events]
    assert seqs == list(range(seqs[0], seqs[0] + 18))  # gap-free, in order
    request = interaction_pb.SendInputRequest.FromString(shape.request)
    reply = interaction_pb.SendInputResponse.FromString(shape.reply)
    assert request.text == TEN_WORDS
    assert request.worker_id == events[-1].worker_id
    assert reply.run.run_id == events[-1].run_finished.run.run_id


@pytest.mark.parametrize(("per_event", "k"), [(True, 1), (False, 1), (False, 2), (False, 4)])
async def test_the_shape_server_sends_exactly_the_declared_messages_and_bytes(
    shape: Shape, shape_target: str, per_event: bool, k: int
) -> None:
    """Each subscription receives, run after run, exactly the declared messages in order: the
    byte counts follow. A missing message would leave a read waiting (caught by the generous
    bound), an extra one would be read as the start of the next run (caught by its bytes: the
    runs are checked one by one, and one more run follows the counted ones)."""
    declared = shape.messages(per_event, k)
    runs = ShapeRuns(shape_target, shape, concurrency=3, per_event=per_event, batches=k, raw=True)
    await runs.open()
    try:
        done = await asyncio.wait_for(runs(6), BOUND)  # 2 runs on each of 3 subscriptions
        assert done == 6
        assert runs.per_run == len(declared) == (18 if per_event else k)
        for received in runs.received:
            assert received == declared * 2
            assert sum(map(len, received)) == 2 * sum(map(len, declared))
        assert runs.replies == [shape.reply] * 6
        await asyncio.wait_for(runs(3), BOUND)  # one more run each: nothing was left over
        assert runs.received == [declared * 3] * 3
    finally:
        await runs.close()
    if not per_event:
        framed = sum(1 + _varint_len(len(e)) + len(e) for e in shape.events)  # tag, length, bytes
        assert sum(map(len, declared)) == framed


def _varint_len(n: int) -> int:
    return max(1, (n.bit_length() + 6) // 7)


def test_the_batches_carry_the_same_events_byte_for_byte(shape: Shape) -> None:
    """An EventBatch of the shape decodes to the captured events, and re-encoding them gives the
    shape's bytes: the batched shape is the per-event shape's bytes, framed."""
    for k in (1, 2, 4):
        batches = shape.batches(k)
        assert len(batches) == k
        decoded = [e for b in batches for e in observation_pb.EventBatch.FromString(b).events]
        assert [e.SerializeToString() for e in decoded] == list(shape.events)
        assert [observation_pb.EventBatch(events=list(observation_pb.EventBatch.FromString(b)
                .events)).SerializeToString() for b in batches] == batches  # fmt: skip


def test_a_spec_round_trips_through_its_file(shape: Shape, tmp_path: Path) -> None:
    path = tmp_path / "shape.json"
    shape.dump(path)
    assert Shape.load(path) == shape


async def test_the_product_batch_count_is_counted_from_a_real_subscription(
    serve_process: ServeProcessFactory,
) -> None:
    """At c=1 a 10-word echo run reaches the subscriber in at least 1 and at most its 18 events'
    worth of SubscribeEventBatches messages (the count the bench reports next to the shape's)."""
    served = await serve_process(None, store="memory")
    per_run = await count_batches(served.target, concurrency=2, runs=4, text=TEN_WORDS)
    assert 1 <= per_run <= 18
