"""The client builds the models an event carries without their dataclass ``__init__`` (a slot
write per field, runtime_client._convert). What it builds must be the very objects the
constructors build: through a real server, the events of runs (every payload a run sends:
queued, started, input and message committed, deltas, usage, state changes, finished — with and
without usage, with and without an error) read with the client, on ``list_events`` and on both
subscription streams, equal the in-process handle's (built with the constructors) field for
field and type for type, with the same hash and repr, and are frozen like them."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING

import pytest
from model_trees import assert_same_events, take

import runtime_client as rc
from runtime_server.embedded import EmbeddedRuntime

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0  # a safety net, never a speed assertion


async def test_events_read_remotely_are_the_constructors_objects(serve: ServeFactory) -> None:
    served = await serve()
    client, embedded = served.client, EmbeddedRuntime(served.runtime)
    worker = (await client.create_worker(profile="echo")).worker
    for text in ("alpha beta gamma", "delta"):
        accepted = await client.send_input(worker.worker_id, text)
        await asyncio.wait_for(client.wait_run(accepted.run.run_id), BOUND)
    remote = (await client.list_events(worker_id=worker.worker_id)).events
    local = (await embedded.list_events(worker_id=worker.worker_id)).events
    streams = await asyncio.gather(
        take(client.subscribe(worker.worker_id), len(local)),
        take(client.subscribe(worker.worker_id, batched=False), len(local)),
    )
    kinds = {e.kind for e in local}
    assert {"run_queued", "run_started", "input_committed", "message_committed"} <= kinds
    assert {"run_finished", "usage_reported", "text_delta", "worker_state_changed"} <= kinds
    for got in (remote, *streams):
        assert_same_events(got, local)
    finished = [e.payload for e in remote if isinstance(e.payload, rc.RunFinished)]
    assert finished
    assert all(p.run.usage.total_tokens > 0 for p in finished)
    with pytest.raises(dataclasses.FrozenInstanceError):
        finished[0].run.state = rc.RunState.FAILED  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        finished[0].run.usage.total_tokens = 0  # type: ignore[misc]
