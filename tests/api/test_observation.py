"""ObservationService through the real server with the real client (guarantees 3 and 6): polling
by cursor, transcript and usage, replay-then-tail subscriptions with no gap and no duplicate,
slow subscribers cut with SUBSCRIBER_LAGGING (never slowing the run or a fast subscriber) and
resumed exactly once, cursor errors, heartbeats, and an ordered graceful shutdown."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving import assert_gap_free, error_info, eventually

from runtime_client import (
    CursorAhead,
    CursorExpired,
    Event,
    Heartbeat,
    RunFinished,
    RunState,
    RuntimeClient,
    RuntimeDraining,
    StatusCode,
    TextDelta,
    Usage,
    WorkerCreated,
)
from runtime_client.api import interaction_service_pb2 as ipb
from runtime_client.api import interaction_service_pb2_grpc as igrpc
from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc
from runtime_client.api import types_pb2 as pb
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import Served, ServeFactory

BOUND = 30.0  # seconds: a safety net only, never a speed assertion

# "fast" yields to the loop between words (so subscribers can keep up); "big" words make a
# non-reading subscriber's HTTP/2 window fill after a few events.
CONFIG: dict[str, Any] = {
    "profiles": {
        "slow": {"provider": "builtin", "options": {"delay_ms": 20}},
        "fast": {"provider": "builtin", "options": {"delay_ms": 1}},
        "very-slow": {"provider": "builtin", "options": {"delay_ms": 500}},
    }
}


def words(n: int, size: int = 0) -> str:
    return " ".join(f"w{i}" + "x" * size for i in range(n))


async def all_events(client: RuntimeClient, worker_id: str = "", page_size: int = 0) -> list[Any]:
    """Every retained event, paging by cursor."""
    out: list[Any] = []
    cursor = 0
    while True:
        page = await client.list_events(after_seq=cursor, worker_id=worker_id, page_size=page_size)
        out.extend(page.events)
        if not page.events:
            return out
        cursor = page.next_after_seq


async def run_to_end(client: RuntimeClient, worker_id: str, text: str) -> Any:
    accepted = await client.send_input(worker_id, text)
    return await client.wait_run(accepted.run.run_id, timeout=BOUND)


async def read_until_finished(call: Any, run_id: str) -> list[pb.Event]:
    """Read a raw SubscribeEvents call until ``run_id``'s RunFinished (heartbeats skipped)."""
    got: list[pb.Event] = []
    async with asyncio.timeout(BOUND):
        while True:
            msg = await call.read()
            assert msg is not grpc.aio.EOF, "stream ended before RunFinished"
            if not msg.seq:
                continue
            got.append(msg)
            kind = msg.WhichOneof("payload")
            if kind == "run_finished" and msg.run_finished.run.run_id == run_id:
                return got


async def read_to_end(call: Any, into: list[pb.Event]) -> None:
    """Read a raw call until it ends (its error, if any, propagates)."""
    async with asyncio.timeout(BOUND):
        while (msg := await call.read()) is not grpc.aio.EOF:
            into.append(msg)


async def consume(stream: AsyncIterator[Event]) -> None:
    async with asyncio.timeout(BOUND):
        async for _ in stream:
            pass


@pytest.fixture
async def obs(serve: ServeFactory) -> Served:
    return await serve(config=CONFIG)


# --- polling: ListEvents, GetTranscript, GetUsage ---------------------------------------------


async def test_list_events_pages_by_cursor_with_bounds_and_worker_filter(obs: Served) -> None:
    client = obs.client
    a = (await client.create_worker()).worker.worker_id
    b = (await client.create_worker()).worker.worker_id
    for text in ("one two three", "four five"):
        await run_to_end(client, a, text)
        await run_to_end(client, b, text + " six")

    first = await client.list_events(page_size=5)
    assert len(first.events) == 5
    assert first.events[0].seq == first.oldest_seq == 1
    assert first.next_after_seq == first.events[-1].seq
    head = first.last_seq
    assert head == (await client.get_runtime()).last_seq

    events = await all_events(client, page_size=5)
    seqs = [e.seq for e in events]
    assert_gap_free(seqs)
    assert seqs[0] == 1
    assert seqs[-1] == head
    assert [e.seq for e in events[:5]] == [e.seq for e in first.events]

    # each page is bounded by page_size, and pages meet exactly at next_after_seq
    page = await client.list_events(after_seq=7, page_size=3)
    assert [e.seq for e in page.events] == [8, 9, 10]
    assert page.next_after_seq == 10
    nxt = await client.list_events(after_seq=page.next_after_seq, page_size=3)
    assert nxt.events[0].seq == 11

    # at the head: nothing, and the cursor stays put
    tail = await client.list_events(after_seq=head)
    assert tail.events == ()
    assert tail.next_after_seq == tail.last_seq == head

    # worker filter: exactly that worker's events, in the same order
    only_a = await all_events(client, worker_id=a, page_size=4)
    assert only_a, "worker a has events"
    assert [e.seq for e in only_a] == [e.seq for e in events if e.worker_id == a]
    assert {e.worker_id for e in only_a} == {a}
    assert sum(isinstance(e.payload, RunFinished) for e in only_a) == 2


async def test_transcript_pages_are_bounded_and_chain_by_token(serve: ServeFactory) -> None:
    served = await serve(config=CONFIG, limits=Limits(transcript_page_max=3))
    client = served.client
    w = (await client.create_worker()).worker.worker_id
    texts = ["alpha", "beta gamma", "delta"]
    for text in texts:
        await run_to_end(client, w, text)

    page = await client.get_transcript(w)  # default page size 100, capped at 3
    assert (len(page.items), page.total_size) == (3, 6)
    assert page.next_page_token
    big = await client.get_transcript(w, page_size=1000)
    assert len(big.items) == 3
    entries = list(page.items)
    token = page.next_page_token
    while token:
        nxt = await client.get_transcript(w, page_size=2, page_token=token)
        assert len(nxt.items) <= 2
        entries.extend(nxt.items)
        token = nxt.next_page_token
    assert [e.index for e in entries] == list(range(6))
    assert [e.message.text for e in entries] == [t for t in texts for _ in (0, 1)]
    assert [e.message.role.value for e in entries][:2] == ["USER", "ASSISTANT"]


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
        total_tokens=a.total_tokens + b.total_tokens,
    )


async def test_usage_per_worker_and_runtime_wide_matches_the_runs(obs: Served) -> None:
    client = obs.client
    a = (await client.create_worker()).worker.worker_id
    b = (await client.create_worker()).worker.worker_id
    runs = {a: [], b: []}  # type: dict[str, list[Any]]
    for text in ("one two three", "four five six seven"):
        runs[a].append(await run_to_end(client, a, text))
    runs[b].append(await run_to_end(client, b, "eight nine"))

    total = Usage()
    for wid, finished in runs.items():
        expected = Usage()
        for run in finished:
            assert run.state is RunState.COMPLETED
            assert run.usage.output_tokens > 0
            expected = _add(expected, run.usage)
        got = await client.get_usage(wid)
        assert got.runs == len(finished)
        assert (got.usage.input_tokens, got.usage.output_tokens) == (
            expected.input_tokens,
            expected.output_tokens,
        )
        assert (await client.get_worker(wid)).usage.output_tokens == expected.output_tokens
        total = _add(total, expected)
    everything = await client.get_usage()
    assert everything.runs == 3
    assert (everything.usage.input_tokens, everything.usage.output_tokens) == (
        total.input_tokens,
        total.output_tokens,
    )
    # the usage the events reported adds up to the same
    reported = [e for e in await all_events(client) if e.kind == "usage_reported"]
    assert sum(e.payload.usage.output_tokens for e in reported) == total.output_tokens


# --- subscriptions: replay then tail ----------------------------------------------------------


async def test_subscribe_from_zero_mid_run_replays_then_tails_without_gap(obs: Served) -> None:
    client = obs.client
    w = (await client.create_worker(profile="slow")).worker.worker_id
    other = (await client.create_worker()).worker.worker_id
    accepted = await client.send_input(w, words(40))
    run_id = accepted.run.run_id

    async def some_deltas() -> bool:
        page = await client.list_events(after_seq=accepted.seq, worker_id=w)
        return sum(isinstance(e.payload, TextDelta) for e in page.events) >= 3

    await eventually(some_deltas, within=BOUND)
    head_at_subscribe = (await client.get_runtime()).last_seq
    received: list[Event] = []
    per_worker: list[Event] = []

    async def follow(worker_id: str, into: list[Event]) -> None:
        stream = client.subscribe(worker_id, after_seq=0, resume=False)
        async with contextlib.aclosing(stream):
            async for ev in stream:
                into.append(ev)
                if isinstance(ev.payload, RunFinished) and ev.payload.run.run_id == run_id:
                    return

    async with asyncio.timeout(BOUND):
        both = asyncio.gather(follow("", received), follow(w, per_worker))
        await run_to_end(client, other, "meanwhile elsewhere")  # interleaved events
        await both

    seqs = [e.seq for e in received]
    assert seqs[0] == 1
    assert_gap_free(seqs)  # strictly increasing, no gap, no duplicate
    assert seqs[-1] > head_at_subscribe, "the tail delivered events committed after subscribing"
    logged = [e.seq for e in await all_events(client) if e.seq <= seqs[-1]]
    assert seqs == logged
    # the worker-filtered stream is exactly that worker's slice of the log
    assert [e.seq for e in per_worker] == [e.seq for e in received if e.worker_id == w]
    deltas = [
        e.payload for e in received if isinstance(e.payload, TextDelta) and e.run_id == run_id
    ]
    assert "".join(d.text for d in deltas) == words(40)


async def test_from_now_only_gets_new_events(obs: Served) -> None:
    client = obs.client
    w = (await client.create_worker()).worker.worker_id
    await run_to_end(client, w, "old news")
    head = (await client.get_runtime()).last_seq
    stream = client.subscribe(from_now=True, resume=False)
    got: list[Event] = []

    async def consume() -> None:
        async for ev in stream:
            got.append(ev)
            if isinstance(ev.payload, RunFinished):
                return

    async with contextlib.aclosing(stream):
        task = asyncio.create_task(consume())
        await eventually(lambda: obs.runtime.info().subscribers >= 1, within=BOUND)
        await run_to_end(client, w, "fresh news")
        await asyncio.wait_for(task, BOUND)
    assert got[0].seq == head + 1
    assert all(e.seq > head for e in got)
    assert_gap_free([e.seq for e in got])
    assert "".join(e.payload.text for e in got if isinstance(e.payload, TextDelta)) == (
        "fresh news"
    )


# --- slow subscribers -------------------------------------------------------------------------


async def test_slow_subscriber_is_cut_without_slowing_the_run_or_others_and_resumes(
    serve: ServeFactory,
) -> None:
    # 128 events of slack for the reader that keeps up (a loaded 2-core CI box can stall it for a
    # few ms); the laggard still overflows: 400 events of 1 kB > 128 + its 64 kB HTTP/2 window.
    served = await serve(config=CONFIG, limits=Limits(subscriber_buffer_events=128))
    client = served.client
    w = (await client.create_worker(profile="fast")).worker.worker_id
    # The laggard never reads while the run goes on. Without BDP probing its HTTP/2 window stays
    # small, so the server's 64-event buffer overflows after a few big events.
    lag_channel = grpc.aio.insecure_channel(served.target, options=[("grpc.http2.bdp_probe", 0)])
    try:
        laggard = ogrpc.ObservationServiceStub(lag_channel).SubscribeEvents(
            opb.SubscribeEventsRequest(after_seq=0)
        )
        fast = ogrpc.ObservationServiceStub(client.channel).SubscribeEvents(
            opb.SubscribeEventsRequest(after_seq=0)
        )
        await eventually(lambda: served.runtime.info().subscribers == 2, within=BOUND)
        accepted = await client.send_input(w, words(400, size=1000))
        fast_events = await read_until_finished(fast, accepted.run.run_id)
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
        assert run.state is RunState.COMPLETED, run.error  # the run was not harmed
        fast.cancel()

        # The laggard: whatever was buffered, then RESOURCE_EXHAUSTED carrying its last seq.
        before: list[pb.Event] = []
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await read_to_end(laggard, before)
        assert caught.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        info = error_info(caught.value)
        assert (info.reason, info.domain) == ("SUBSCRIBER_LAGGING", "worker-runtime")
        last_seq = int(info.metadata["last_seq"])
        assert before
        assert last_seq == before[-1].seq
        assert len(before) < len(fast_events), "the laggard was cut before the run ended"

        # Resuming from its last seq: every later event exactly once, in order.
        resumed = ogrpc.ObservationServiceStub(lag_channel).SubscribeEvents(
            opb.SubscribeEventsRequest(after_seq=last_seq)
        )
        rest = await read_until_finished(resumed, accepted.run.run_id)
        resumed.cancel()
    finally:
        await lag_channel.close()

    logged = [e.seq for e in await all_events(client)]
    combined = [m.seq for m in before] + [m.seq for m in rest]
    assert combined == logged[: len(combined)]
    assert_gap_free(combined)
    # the fast subscriber was never cut: it saw the whole log up to RunFinished
    assert [m.seq for m in fast_events] == logged[: len(fast_events)]
    assert combined == [m.seq for m in fast_events]


@pytest.mark.parametrize("batched", [True, False])
async def test_client_subscribe_resumes_by_itself_after_being_cut(
    serve: ServeFactory, batched: bool
) -> None:
    served = await serve(config=CONFIG, limits=Limits(subscriber_buffer_events=64))
    channel = grpc.aio.insecure_channel(served.target, options=[("grpc.http2.bdp_probe", 0)])
    slow_client = RuntimeClient.from_channel(channel)
    calls = 0
    rpc = "SubscribeEventBatches" if batched else "SubscribeEvents"
    start = getattr(slow_client._observation, rpc)

    def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return start(*args, **kwargs)

    setattr(slow_client._observation, rpc, counting)
    client = served.client
    try:
        w = (await client.create_worker(profile="fast")).worker.worker_id
        stream = slow_client.subscribe(after_seq=0, batched=batched)
        async with contextlib.aclosing(stream):
            first = await asyncio.wait_for(anext(stream), BOUND)  # connected; now stop reading
            assert isinstance(first.payload, WorkerCreated)
            accepted = await client.send_input(w, words(400, size=1000))
            run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
            assert run.state is RunState.COMPLETED
            got = [first]
            async with asyncio.timeout(BOUND):
                async for ev in stream:
                    got.append(ev)
                    if isinstance(ev.payload, RunFinished):
                        break
    finally:
        await channel.close()
    assert calls >= 2, "the stream was cut and resumed"
    seqs = [e.seq for e in got]
    assert_gap_free(seqs)
    assert seqs == [e.seq for e in await all_events(client)][: len(seqs)]
    last = got[-1].payload
    assert isinstance(last, RunFinished)
    assert last.run.run_id == accepted.run.run_id


# --- cursor errors ----------------------------------------------------------------------------


async def test_cursor_ahead_of_the_log_is_out_of_range(obs: Served) -> None:
    client = obs.client
    await client.create_worker()
    head = (await client.get_runtime()).last_seq
    with pytest.raises(CursorAhead) as caught:
        await client.list_events(after_seq=head + 10)
    assert caught.value.code is StatusCode.OUT_OF_RANGE
    assert caught.value.last_seq == head
    with pytest.raises(CursorAhead):
        await consume(client.subscribe(after_seq=head + 10))
    # raw: the status and ErrorInfo on the wire
    call = ogrpc.ObservationServiceStub(client.channel).SubscribeEvents(
        opb.SubscribeEventsRequest(after_seq=head + 1)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await asyncio.wait_for(call.read(), BOUND)
    assert raw.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert error_info(raw.value).reason == "CURSOR_AHEAD"


async def test_cursor_older_than_retention_is_expired_with_oldest_seq(
    serve: ServeFactory,
) -> None:
    served = await serve(config=CONFIG, limits=Limits(event_retention_events=50))
    client = served.client
    w = (await client.create_worker()).worker.worker_id
    await run_to_end(client, w, words(120))
    info = await client.get_runtime()
    assert info.oldest_seq > 2
    oldest = info.oldest_seq

    with pytest.raises(CursorExpired) as caught:
        await client.list_events(after_seq=1)
    assert caught.value.code is StatusCode.OUT_OF_RANGE
    assert caught.value.oldest_seq == oldest
    with pytest.raises(CursorExpired) as sub_caught:
        await consume(client.subscribe(after_seq=1))
    assert sub_caught.value.oldest_seq == oldest

    stub = ogrpc.ObservationServiceStub(client.channel)
    with pytest.raises(grpc.aio.AioRpcError) as raw:
        await stub.ListEvents(opb.ListEventsRequest(after_seq=1))
    assert raw.value.code() is grpc.StatusCode.OUT_OF_RANGE
    detail = error_info(raw.value)
    assert detail.reason == "CURSOR_EXPIRED"
    assert int(detail.metadata["oldest_seq"]) == oldest
    call = stub.SubscribeEvents(opb.SubscribeEventsRequest(after_seq=1))
    with pytest.raises(grpc.aio.AioRpcError) as raw_sub:
        await asyncio.wait_for(call.read(), BOUND)
    assert raw_sub.value.code() is grpc.StatusCode.OUT_OF_RANGE
    assert error_info(raw_sub.value).metadata["oldest_seq"] == str(oldest)

    # the boundary: after_seq = oldest - 1 is still fine, and so is 0 ("oldest retained")
    page = await client.list_events(after_seq=oldest - 1, page_size=1)
    assert page.events[0].seq == oldest
    zero = await client.list_events(after_seq=0, page_size=1)
    assert zero.events[0].seq == oldest


# --- heartbeats -------------------------------------------------------------------------------


async def test_quiet_subscription_gets_heartbeats_the_client_hides_by_default(
    serve: ServeFactory,
) -> None:
    served = await serve(config=CONFIG, limits=Limits(heartbeat_interval_seconds=0.05))
    client = served.client
    await client.create_worker()
    head = (await client.get_runtime()).last_seq

    raw = ogrpc.ObservationServiceStub(client.channel).SubscribeEvents(
        opb.SubscribeEventsRequest(from_now=True)
    )
    beats: list[pb.Event] = []
    async with asyncio.timeout(BOUND):
        while len(beats) < 3:
            msg = await raw.read()
            assert (msg.seq, msg.WhichOneof("payload")) == (0, "heartbeat")
            beats.append(msg)
    assert beats[-1].heartbeat.last_seq == head
    raw.cancel()

    shown = client.subscribe(from_now=True, include_heartbeats=True)
    async with contextlib.aclosing(shown):
        ev = await asyncio.wait_for(anext(shown), BOUND)
        assert ev.seq == 0
        assert isinstance(ev.payload, Heartbeat)
        assert ev.payload.last_seq == head

    hidden = client.subscribe(from_now=True)
    hidden_got: list[Event] = []

    async def consume() -> None:
        hidden_got.append(await anext(hidden))

    async with contextlib.aclosing(hidden):
        task = asyncio.create_task(consume())
        # let several heartbeats go by on this very stream: none of them may surface
        counter = ogrpc.ObservationServiceStub(client.channel).SubscribeEvents(
            opb.SubscribeEventsRequest(from_now=True)
        )
        async with asyncio.timeout(BOUND):
            for _ in range(4):
                await counter.read()
        counter.cancel()
        assert not task.done()
        await client.create_worker()
        await asyncio.wait_for(task, BOUND)
    assert hidden_got[0].seq == head + 1
    assert isinstance(hidden_got[0].payload, WorkerCreated)


# --- shutdown ---------------------------------------------------------------------------------


async def test_graceful_stop_interrupts_the_run_and_ends_streams_cleanly(obs: Served) -> None:
    client = obs.client
    w = (await client.create_worker(profile="very-slow")).worker.worker_id
    accepted = await client.send_input(w, words(200))
    stub = ogrpc.ObservationServiceStub(client.channel)
    call = stub.SubscribeEvents(opb.SubscribeEventsRequest(worker_id=w, after_seq=accepted.seq))
    whole = stub.SubscribeEvents(opb.SubscribeEventsRequest(after_seq=0))
    health = health_pb2_grpc.HealthStub(client.channel)
    check = health_pb2.HealthCheckRequest(service="")
    assert (await health.Check(check)).status == health_pb2.HealthCheckResponse.SERVING
    await eventually(lambda: obs.runtime.info().subscribers == 2, within=BOUND)

    stopping = asyncio.create_task(obs.server.stop(3.0))  # the run cannot finish in 3 s
    try:

        async def not_serving() -> bool:
            resp = await health.Check(check)
            return bool(resp.status == health_pb2.HealthCheckResponse.NOT_SERVING)

        await eventually(not_serving, within=BOUND)
        # new work is refused while draining
        with pytest.raises(RuntimeDraining) as caught:
            await client.send_input(w, "too late")
        assert caught.value.code is StatusCode.UNAVAILABLE
        with pytest.raises(grpc.aio.AioRpcError) as raw:
            await igrpc.InteractionServiceStub(client.channel).SendInput(
                ipb.SendInputRequest(worker_id=w, text="too late")
            )
        assert raw.value.code() is grpc.StatusCode.UNAVAILABLE
        assert error_info(raw.value).reason == "RUNTIME_DRAINING"

        # both streams deliver the interruption, then end with UNAVAILABLE / RUNTIME_DRAINING
        # carrying the seq to resume after (an OK end would tell a raw client all is well)
        async def drain(c: Any) -> list[pb.Event]:
            out = []

            async def read_all() -> None:
                async with asyncio.timeout(BOUND):
                    while (msg := await c.read()) is not grpc.aio.EOF:
                        out.append(msg)

            with pytest.raises(grpc.aio.AioRpcError) as ended:
                await read_all()
            assert ended.value.code() is grpc.StatusCode.UNAVAILABLE
            info = error_info(ended.value)
            assert info.reason == "RUNTIME_DRAINING"
            assert int(info.metadata["last_seq"]) == [m.seq for m in out if m.seq][-1]
            return out

        got, got_whole = await asyncio.gather(drain(call), drain(whole))
    finally:
        await asyncio.wait_for(stopping, BOUND)
    finished = [m for m in got if m.WhichOneof("payload") == "run_finished"]
    assert len(finished) == 1
    assert finished[0].run_finished.run.run_id == accepted.run.run_id
    assert finished[0].run_finished.run.state == pb.RUN_STATE_INTERRUPTED
    assert any(m.WhichOneof("payload") == "text_delta" for m in got)
    seqs = [m.seq for m in got_whole if m.seq]
    assert_gap_free(seqs)
    assert finished[0].seq in seqs
