"""Every payload kind a run and a worker's life send, read through a real server with the real
client, is the very object the in-process handle builds with the model constructors: field for
field and type for type, equal, with the same repr and hash, frozen, and pickled and copied
alike. The client builds these without the dataclass ``__init__`` (runtime_client._convert and
_makers: a draft of the class's slots turned into the class); the echo run's kinds are also
walked by tests/api/test_client_event_models.py — this adds reasoning, tool calls (a result and
an error), a retried stream (PartialDiscarded), a failed run's RunError, WorkerCreated,
WorkerStopped and WorkerDeleted, on ``list_events`` and both subscription streams."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import pickle
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pytest
from model_trees import assert_same_events, take

import engine
import runtime_client as rc
from engine import ScriptedProvider
from engine.testing import text_reply, tool_reply
from runtime_server.embedded import EmbeddedRuntime

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0  # a safety net, never a speed assertion


def _scripts() -> list[list[Any]]:
    thinking = [engine.ReasoningDelta("let me see"), *tool_reply(
        ("call-1", "add", '{"a": 1, "b": 2}'), ("call-2", "broken", "{}")
    )]  # fmt: skip
    retried = [engine.TextDelta("half"), engine.ProviderStreamError("hiccup", retryable=True)]
    failing = [engine.TextDelta("doomed"), engine.ProviderStreamError("gone", retryable=False)]
    return [thinking, text_reply("three"), retried, text_reply("a whole answer"), failing]


async def _add(args: Mapping[str, Any]) -> str:
    return str(args["a"] + args["b"])


async def _broken(args: Mapping[str, Any]) -> str:
    raise RuntimeError("this tool always fails")


async def test_every_payload_kind_read_remotely_is_the_constructors_object(
    serve: ServeFactory,
) -> None:
    provider = ScriptedProvider(_scripts())
    registry = engine.ToolRegistry(
        [engine.Tool("add", "Adds a and b.", _add), engine.Tool("broken", "Fails.", _broken)]
    )
    served = await serve(
        provider_factory=lambda _profile: provider, tools_factory=lambda _p, _w: registry
    )
    client, embedded = served.client, EmbeddedRuntime(served.runtime)
    wid = (await client.create_worker()).worker.worker_id
    states = []
    for text in ("use the tools", "retry please", "fail now"):
        accepted = await client.send_input(wid, text)
        states.append((await client.wait_run(accepted.run.run_id, timeout=BOUND)).state)
    assert states == [rc.RunState.COMPLETED, rc.RunState.COMPLETED, rc.RunState.FAILED]
    await client.stop_worker(wid, reason="enough")
    local = (await embedded.list_events(worker_id=wid)).events
    await client.delete_worker(wid)
    local = (await embedded.list_events(after_seq=local[0].seq - 1)).events
    local = tuple(e for e in local if e.worker_id == wid)

    remote = tuple(e for e in (await client.list_events()).events if e.worker_id == wid)
    streams = await asyncio.gather(
        take(client.subscribe(wid), len(local)),
        take(client.subscribe(wid, batched=False), len(local)),
    )
    kinds = {e.kind for e in local}
    assert {
        "worker_created", "reasoning_delta", "tool_call_started", "tool_call_finished",
        "partial_discarded", "text_delta", "message_committed", "run_finished",
        "worker_stopped", "worker_deleted",
    } <= kinds  # fmt: skip
    for got in (remote, *streams):
        assert_same_events(got, local)
        for a, b in zip(got, local, strict=True):
            # pickled and copied alike (the payload; an Event's raw wire message is not pickled)
            assert pickle.loads(pickle.dumps(a.payload)) == b.payload
            assert copy.copy(a) == b
            assert copy.deepcopy(a.payload) == b.payload
            assert type(copy.copy(a.payload)) is type(b.payload)
    payloads = [e.payload for e in remote]
    finished = [p.run for p in payloads if isinstance(p, rc.RunFinished)]
    assert [r.error for r in finished[:2]] == [None, None]
    assert finished[2].error is not None
    assert finished[2].error.code == "PROVIDER_STREAM_ERROR"
    results = {p.call_id: p.is_error for p in payloads if isinstance(p, rc.ToolCallFinished)}
    assert results == {"call-1": False, "call-2": True}
    entries = [p.entry for p in payloads if isinstance(p, rc.MessageCommitted)]
    calls = [c for entry in entries for c in entry.message.tool_calls]
    assert [c.call_id for c in calls] == ["call-1", "call-2"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        remote[0].seq = 0  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        calls[0].name = "other"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        finished[2].error.code = ""  # type: ignore[misc]
