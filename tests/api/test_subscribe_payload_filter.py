"""SubscribeEventsRequest.payload_types through a real server: only the named payload kinds (on
both streaming RPCs and in-process), heartbeats still flow, resuming after the last delivered seq
is exact, an unknown name is INVALID_ARGUMENT naming the field, the feature is advertised, and
the filter's names are exactly the proto's Event.payload oneof (minus heartbeat)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

import pytest
from serving import eventually

from runtime_client import Event, InvalidArgument, RunFinished, WorkerCreated
from runtime_client.api import types_pb2
from runtime_server import errors as server_errors
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import ServeFactory

LIFECYCLE = ("worker_created", "run_finished")


async def _take(stream: AsyncGenerator[Event, None], n: int) -> list[Event]:
    out: list[Event] = []
    async with contextlib.aclosing(stream) as events:
        async with asyncio.timeout(20):
            async for event in events:
                out.append(event)
                if len(out) >= n:
                    break
    return out


async def test_every_payload_name_of_the_proto_is_accepted(serve: ServeFactory) -> None:
    served = await serve()
    oneof = types_pb2.Event.DESCRIPTOR.oneofs_by_name["payload"]
    names = [f.name for f in oneof.fields if f.name != "heartbeat"]
    assert len(names) >= 16
    for name in names:  # each one alone, then all at once: no error
        served.runtime.subscribe(payload_types=[name], from_now=True).close()
    served.runtime.subscribe(payload_types=names, from_now=True).close()


@pytest.mark.parametrize("batched", [True, False])
async def test_only_the_named_kinds_arrive_and_resume_is_exact(
    serve: ServeFactory, batched: bool
) -> None:
    served = await serve()
    client = served.client
    workers = [(await client.create_worker(profile="echo")).worker for _ in range(2)]
    runs = [await client.send_input(w.worker_id, "one two three four") for w in workers]
    for accepted in runs:
        await client.wait_run(accepted.run.run_id)
    log = (await client.list_events(page_size=1000)).events
    wanted = [e for e in log if type(e.payload).KIND in LIFECYCLE]
    assert len(wanted) == 4  # 2 created + 2 finished; the log has many more (text deltas...)
    assert len(log) > len(wanted)
    got = await _take(client.subscribe(payload_types=LIFECYCLE, batched=batched), 4)
    assert [e.seq for e in got] == [e.seq for e in wanted]
    assert {type(e.payload) for e in got} == {WorkerCreated, RunFinished}
    # resuming after a filtered event's seq skips nothing of the filter
    rest = await _take(
        client.subscribe(after_seq=got[1].seq, payload_types=LIFECYCLE, batched=batched), 2
    )
    assert [e.seq for e in rest] == [e.seq for e in wanted[2:]]
    # a worker filter combines with it
    one = await _take(
        client.subscribe(workers[1].worker_id, payload_types=["run_finished"], batched=batched), 1
    )
    assert one[0].seq == wanted[3].seq


async def test_heartbeats_flow_under_a_filter(serve: ServeFactory) -> None:
    served = await serve(limits=Limits(heartbeat_interval_seconds=0.05))
    stream = served.client.subscribe(
        payload_types=["worker_deleted"], include_heartbeats=True, from_now=True
    )
    got = await _take(stream, 2)
    assert all(e.seq == 0 for e in got)


async def test_live_events_are_filtered_too(serve: ServeFactory) -> None:
    served = await serve()
    client = served.client
    stream = client.subscribe(payload_types=["run_finished"], from_now=True)
    task = asyncio.ensure_future(_take(stream, 1))
    # the subscription is live (from_now: a run started before it would be missed, not a failure
    # but a hang)
    await eventually(lambda: served.runtime.info().subscribers == 1, within=30)
    w = (await client.create_worker(profile="echo")).worker
    accepted = await client.send_input(w.worker_id, "a b c")
    [event] = await task
    assert isinstance(event.payload, RunFinished)
    assert event.payload.run.run_id == accepted.run.run_id


@pytest.mark.parametrize("batched", [True, False])
async def test_unknown_name_is_invalid_argument_naming_the_field(
    serve: ServeFactory, batched: bool
) -> None:
    served = await serve()
    stream = served.client.subscribe(payload_types=["text_delta", "no_such"], batched=batched)
    with pytest.raises(InvalidArgument) as bad:
        await _take(stream, 1)
    assert bad.value.field == "payload_types"
    assert "no_such" in bad.value.message
    with pytest.raises(InvalidArgument):  # heartbeats are not filtered: naming one is a mistake
        await _take(served.client.subscribe(payload_types=["heartbeat"], batched=batched), 1)
    # in-process, the same error
    with pytest.raises(server_errors.InvalidArgument):
        served.runtime.subscribe(payload_types=["no_such"])


async def test_the_feature_is_advertised(serve: ServeFactory) -> None:
    served = await serve()
    info = await served.client.get_runtime()
    assert "payload_type_filter" in info.capabilities.features


async def test_filtered_events_take_no_buffer_room(serve: ServeFactory) -> None:
    """A subscriber that asks for run_finished only is not cut for lagging by a run's deltas,
    even with a buffer smaller than the run's event count."""
    served = await serve(limits=Limits(subscriber_buffer_events=8))
    sub = served.runtime.subscribe(payload_types=["run_finished"], from_now=True)
    try:
        w = (await served.client.create_worker(profile="echo")).worker
        words = " ".join(f"w{i}" for i in range(50))
        accepted = await served.client.send_input(w.worker_id, words)
        await served.client.wait_run(accepted.run.run_id)
        event = await sub.next(5.0)
        assert event is not None
        assert type(event.payload).__name__ == "RunFinished"
    finally:
        sub.close()
