"""runtime_server.wire_size is an UPPER bound of the protobuf encoding: for random and huge domain
values (every payload type, maps, repeated fields, nested workspace and bundle refs, 1- to 4-byte
UTF-8 characters, varint edges), each bound is at least the real ``ByteSize()`` of the message the
gRPC edge converts the value into. Pages and batches are cut with these bounds, so an estimate
that ran low could let a page outgrow the message limit."""

from __future__ import annotations

import dataclasses
import random
import typing
from collections.abc import Callable
from typing import Any

import pytest

import engine
from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import management_service_pb2 as mpb
from runtime_client.api import observation_service_pb2 as opb
from runtime_server import model as m
from runtime_server import wire_size
from runtime_server.grpc import convert as cv

# 1-, 2-, 3- and 4-byte UTF-8 characters
ALPHABETS = ("abcxyz09 _-/", "éüßñÆ", "日本語字", "\N{GRINNING FACE}\N{ROCKET}\U00010348")
# lengths around varint boundaries (127/128, 16383/16384) and a few large ones
LENGTHS = (0, 0, 1, 5, 36, 127, 128, 300, 16383, 16384, 70_000)
INTS = (0, 1, 127, 128, 2**31 - 1, 2**32 - 1, 2**63 - 1, 2**64 - 1)


def text(rng: random.Random, huge: bool = False) -> str:
    n = rng.choice((*LENGTHS, 600_000)) if huge else rng.choice(LENGTHS)
    alphabet = rng.choice(ALPHABETS)
    if n > 1000:  # build big strings quickly: a random block repeated
        block = "".join(rng.choice(alphabet) for _ in range(97))
        return (block * (n // 97 + 1))[:n]
    return "".join(rng.choice(alphabet) for _ in range(n))


def when(rng: random.Random) -> float:
    return rng.choice((0.0, 1.5, 1_700_000_000.123456, 4_102_444_800.999999, rng.random() * 2e9))


def usage(rng: random.Random) -> engine.Usage:
    # total_tokens is input + output: keep their sum within uint64
    return engine.Usage(*(rng.choice(INTS) // 2 for _ in range(5)))


def workspace(rng: random.Random) -> m.Workspace:
    mounts = tuple(
        m.Mount(text(rng), rng.choice(list(m.MountMode))) for _ in range(rng.choice((0, 1, 33)))
    )
    return m.Workspace(text(rng), mounts, rng.choice(list(m.MountMode)))


def worker(rng: random.Random) -> m.Worker:
    return m.Worker(
        worker_id=text(rng),
        runtime_id=text(rng),
        state=rng.choice(list(m.WorkerState)),
        profile=text(rng),
        display_name=text(rng),
        labels={text(rng) + str(i): text(rng) for i in range(rng.choice((0, 1, 3, 64)))},
        active_run_id=text(rng),
        created_at=when(rng),
        usage=usage(rng),
        workspace=workspace(rng) if rng.random() < 0.7 else None,
        config_bundle=m.ConfigBundleRef(text(rng), text(rng)) if rng.random() < 0.7 else None,
        queued_runs=rng.choice(INTS[:6]),
        capabilities=tuple(text(rng) for _ in range(rng.choice((0, 1, 5)))),
        tools=rng.choice((None, (), tuple(text(rng) for _ in range(rng.choice((1, 7)))))),
    )


def run(rng: random.Random) -> m.Run:
    return m.Run(
        run_id=text(rng),
        worker_id=text(rng),
        state=rng.choice(list(m.RunState)),
        created_at=when(rng),
        input_text=text(rng),
        started_at=when(rng),
        finished_at=when(rng),
        usage=usage(rng),
        error=m.RunError(text(rng), text(rng, huge=True)) if rng.random() < 0.5 else None,
        stop_reason=text(rng),
    )


def message(rng: random.Random) -> engine.Message:
    calls = tuple(
        engine.ToolCall(text(rng), text(rng), text(rng, huge=True))
        for _ in range(rng.choice((0, 1, 4)))
    )
    return engine.Message(
        role=rng.choice(list(engine.Role)),
        text=text(rng, huge=True),
        reasoning=text(rng),
        reasoning_signature=text(rng),
        tool_calls=calls,
        tool_call_id=text(rng),
        tool_name=text(rng),
        is_error=rng.random() < 0.5,
        stop_reason=rng.choice((None, *engine.StopReason)),
    )


def entry(rng: random.Random) -> m.TranscriptEntry:
    return m.TranscriptEntry(text(rng), rng.choice(INTS[:6]), text(rng), when(rng), message(rng))


def diagnostic(rng: random.Random) -> m.Diagnostic:
    return m.Diagnostic(
        rng.choice(list(m.DiagnosticLevel)),
        text(rng),
        text(rng, huge=True),
        when(rng),
        text(rng),
        text(rng),
    )


PAYLOADS: list[Callable[[random.Random], m.Payload]] = [
    lambda r: m.WorkerCreated(worker(r)),
    lambda r: m.WorkerStateChanged(r.choice(list(m.WorkerState)), r.choice(list(m.WorkerState))),
    lambda r: m.RunQueued(run(r)),
    lambda r: m.RunStarted(run(r)),
    lambda r: m.InputCommitted(entry(r)),
    lambda r: m.TextDelta(text(r, huge=True)),
    lambda r: m.ReasoningDelta(text(r, huge=True)),
    lambda r: m.ToolCallStarted(text(r), text(r), text(r, huge=True)),
    lambda r: m.ToolCallFinished(text(r), text(r), text(r, huge=True), r.random() < 0.5),
    lambda r: m.MessageCommitted(entry(r)),
    lambda r: m.UsageReported(usage(r)),
    lambda r: m.PartialDiscarded(text(r)),
    lambda r: m.RunFinished(run(r)),
    lambda r: m.WorkerStopped(text(r)),
    lambda r: m.WorkerDeleted(),
    diagnostic,
]


def event(rng: random.Random, payload: m.Payload) -> m.Event:
    return m.Event(rng.choice(INTS), when(rng) or 1.0, text(rng), text(rng), payload)


def check(bound: int, msg: Any) -> None:
    real = msg.ByteSize()
    assert bound >= real, f"bound {bound} < real {real} for {type(msg).__name__}"


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("make", PAYLOADS, ids=[f"payload{i}" for i in range(len(PAYLOADS))])
def test_event_bound_is_at_least_the_encoded_size(
    seed: int, make: Callable[[random.Random], m.Payload]
) -> None:
    rng = random.Random(seed * 1000 + PAYLOADS.index(make))
    e = event(rng, make(rng))
    check(wire_size.event_body(e), cv.event(e))
    check(wire_size.event_size(e), opb.EventBatch(events=[cv.event(e)]))
    # the fallback for payload types without a rule of their own is an upper bound as well
    fallback = wire_size.SCALAR + wire_size.string(e.worker_id) + wire_size.string(e.run_id)
    fallback += wire_size.TIMESTAMP + wire_size.nested(wire_size.generic_body(e.payload))
    check(fallback, cv.event(e))


@pytest.mark.parametrize("seed", range(40))
def test_page_item_bounds_are_at_least_the_encoded_size(seed: int) -> None:
    rng = random.Random(seed)
    workers = [worker(rng) for _ in range(3)]
    check(
        sum(wire_size.worker_size(w) for w in workers),
        cpb.ListWorkersResponse(workers=[cv.worker(w) for w in workers]),
    )
    entries = [entry(rng) for _ in range(3)]
    check(
        sum(wire_size.entry_size(x) for x in entries),
        opb.GetTranscriptResponse(entries=[cv.entry(x) for x in entries]),
    )
    diags = [diagnostic(rng) for _ in range(3)]
    check(
        sum(wire_size.diagnostic_size(d) for d in diags),
        mpb.ListDiagnosticsResponse(diagnostics=[cv.diagnostic(d) for d in diags]),
    )
    events = [event(rng, rng.choice(PAYLOADS)(rng)) for _ in range(4)]
    check(
        sum(wire_size.event_size(x) for x in events),
        opb.ListEventsResponse(events=[cv.event(x) for x in events]),
    )


def test_a_maximal_worker_at_the_default_limits_fits_a_quarter_message() -> None:
    """With the default limits every stored worker fits a page on its own (so a ListWorkers page
    is never forced to carry one item past the budget)."""
    lim = m.Limits()
    big = "\N{GRINNING FACE}"
    w = m.Worker(
        worker_id="0" * 36,
        runtime_id="0" * 36,
        state=m.WorkerState.RUNNING,
        profile=big * lim.max_id_chars,
        display_name=big * lim.max_display_name_chars,
        labels={
            f"{i:03}" + big * (lim.max_label_chars - 3): big * lim.max_label_chars
            for i in range(lim.max_labels)
        },
        active_run_id="0" * 36,
        created_at=1.0,
        workspace=m.Workspace(
            "/" + big * (lim.max_path_chars - 1),
            tuple(m.Mount("/" + big * (lim.max_path_chars - 1)) for _ in range(lim.max_mounts)),
        ),
        config_bundle=m.ConfigBundleRef(big * lim.max_id_chars, big * lim.max_ref_chars),
    )
    real = cv.worker(w).ByteSize()
    assert wire_size.worker_size(w) >= real
    assert wire_size.worker_size(w) <= wire_size.page_budget(lim.max_message_bytes)


# The fields wire_size counts, per model class: a field added to the model (and so, through
# _convert, to the wire) must be counted in runtime_server.wire_size too — then update this pin.
COUNTED: dict[type, set[str]] = {
    m.Worker: {
        "worker_id", "runtime_id", "state", "profile", "display_name", "labels", "active_run_id",
        "created_at", "usage", "workspace", "config_bundle", "queued_runs", "capabilities",
        "tools",
    },
    m.Workspace: {"root", "mounts", "root_mode"},
    m.Mount: {"path", "mode"},
    m.ConfigBundleRef: {"id", "digest"},
    m.Run: {
        "run_id", "worker_id", "state", "created_at", "input_text", "started_at", "finished_at",
        "usage", "error", "stop_reason",
    },
    m.RunError: {"code", "message"},
    m.TranscriptEntry: {"worker_id", "index", "run_id", "message", "created_at"},
    # reasoning_signature, reasoning_blocks, reasoning_field (and ToolCall.extra) are provider
    # data kept for the next request, not sent to clients (_convert.message leaves them out)
    engine.Message: {
        "role", "text", "reasoning", "reasoning_signature", "tool_calls", "tool_call_id",
        "tool_name", "is_error", "stop_reason", "reasoning_blocks", "reasoning_field",
        "incomplete",  # a bool: a fixed cost, inside the event overhead
    },
    engine.ToolCall: {"call_id", "name", "arguments", "extra"},
    engine.Usage: {
        "input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens",
        "reasoning_tokens",
    },
    m.Diagnostic: {"level", "code", "message", "time", "worker_id", "run_id"},
    m.Event: {"seq", "time", "worker_id", "run_id", "payload"},
}  # fmt: skip


@pytest.mark.parametrize("cls", list(COUNTED), ids=lambda c: c.__name__)
def test_the_bounds_count_every_field_of_the_model(cls: type) -> None:
    assert {f.name for f in dataclasses.fields(cls)} == COUNTED[cls]


def test_every_payload_type_has_its_own_bound() -> None:
    assert set(typing.get_args(m.Payload)) <= set(wire_size._PAYLOAD)
    assert len(PAYLOADS) == len(typing.get_args(m.Payload))
