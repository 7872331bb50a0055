"""Guarantee 7: every malformed request is INVALID_ARGUMENT naming the field (unknown ids are
NOT_FOUND), never UNKNOWN/INTERNAL; raw proto values the typed client cannot send go through the
generated stubs; and a storm of bad requests harms neither the server nor another worker's run."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving import error_info

from runtime_client import (
    ConfigBundleRef,
    InvalidArgument,
    Mount,
    NotFound,
    ProfileNotFound,
    RunNotFound,
    RunState,
    RuntimeClient,
    RuntimeServiceError,
    StatusCode,
    TextDelta,
    WorkerNotFound,
    Workspace,
)
from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import catalog_service_pb2_grpc as cgrpc
from runtime_client.api import interaction_service_pb2 as ipb
from runtime_client.api import interaction_service_pb2_grpc as igrpc
from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc
from runtime_client.api import types_pb2 as pb
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0  # seconds: a safety net only
LIMITS = Limits(
    max_input_chars=100,
    max_display_name_chars=20,
    max_labels=3,
    max_label_chars=10,
    max_request_id_chars=16,
)
# A run of ~0.6 s on the "slow" profile (20 ms a word), under max_input_chars, that the storm
# must leave unaffected.
BYSTANDER_TEXT = " ".join(f"b{i % 10}" for i in range(30))


@dataclass
class Ctx:
    client: RuntimeClient
    worker_id: str  # an idle worker with a two-entry transcript
    run_id: str  # its finished run
    workers_token: str  # a ListWorkers page token
    transcript_token: str  # a GetTranscript page token

    @property
    def catalog(self) -> Any:
        return cgrpc.CatalogServiceStub(self.client.channel)

    @property
    def interaction(self) -> Any:
        return igrpc.InteractionServiceStub(self.client.channel)

    @property
    def observation(self) -> Any:
        return ogrpc.ObservationServiceStub(self.client.channel)


Call = Callable[[Ctx], Awaitable[Any]]
# (id, call, expected field) — INVALID_ARGUMENT naming that field
INVALID: list[tuple[str, Call, str]] = [
    # SendInput
    ("empty text", lambda c: c.client.send_input(c.worker_id, ""), "text"),
    ("blank text", lambda c: c.client.send_input(c.worker_id, " \n\t "), "text"),
    ("oversized text", lambda c: c.client.send_input(c.worker_id, "x" * 101), "text"),
    ("send without worker_id", lambda c: c.client.send_input("", "hi"), "worker_id"),
    (
        "send oversized request_id",
        lambda c: c.client.send_input(c.worker_id, "hi", request_id="r" * 17),
        "request_id",
    ),
    (
        "send unprintable request_id",
        lambda c: c.client.send_input(c.worker_id, "hi", request_id="a\x00b"),
        "request_id",
    ),
    (
        "busy_policy 99",
        lambda c: c.interaction.SendInput(
            ipb.SendInputRequest(worker_id=c.worker_id, text="hi", busy_policy=99)  # type: ignore[arg-type]
        ),
        "busy_policy",
    ),
    # CancelRun / GetRun
    ("cancel without run_id", lambda c: c.client.cancel_run(""), "run_id"),
    ("get run without run_id", lambda c: c.client.get_run(""), "run_id"),
    # CreateWorker
    ("worker_id not a uuid", lambda c: c.client.create_worker(worker_id="worker-1"), "worker_id"),
    (
        "oversized display_name",
        lambda c: c.client.create_worker(display_name="d" * 21),
        "display_name",
    ),
    (
        "too many labels",
        lambda c: c.client.create_worker(labels={f"k{i}": "v" for i in range(4)}),
        "labels",
    ),
    ("oversized label key", lambda c: c.client.create_worker(labels={"k" * 11: "v"}), "labels"),
    ("empty label key", lambda c: c.client.create_worker(labels={"": "v"}), "labels"),
    (
        "oversized label value",
        lambda c: c.client.create_worker(labels={"k": "v" * 11}),
        "labels[k]",
    ),
    (
        "create oversized request_id",
        lambda c: c.client.create_worker(request_id="r" * 17),
        "request_id",
    ),
    (
        "relative workspace root",
        lambda c: c.client.create_worker(workspace=Workspace("relative/dir")),
        "workspace.root",
    ),
    (
        "relative mount path",
        lambda c: c.client.create_worker(workspace=Workspace("/srv", (Mount("data"),))),
        "workspace.mounts[0].path",
    ),
    (
        "workspace without root",
        lambda c: c.catalog.CreateWorker(cpb.CreateWorkerRequest(workspace=pb.Workspace())),
        "workspace.root",
    ),
    (
        "mount mode 7",
        lambda c: c.catalog.CreateWorker(
            cpb.CreateWorkerRequest(
                workspace=pb.Workspace(root="/srv", mounts=[pb.Mount(path="/d", mode=7)])  # type: ignore[arg-type]
            )
        ),
        "workspace.mounts[0].mode",
    ),
    (
        "config bundle without id",
        lambda c: c.client.create_worker(config_bundle=ConfigBundleRef("", "sha256:x")),
        "config_bundle.id",
    ),
    (
        "oversized initial_input",
        lambda c: c.client.create_worker(initial_input="x" * 101),
        "initial_input",
    ),
    ("blank initial_input", lambda c: c.client.create_worker(initial_input="   "), "initial_input"),
    # GetWorker / StopWorker / DeleteWorker
    ("get without worker_id", lambda c: c.client.get_worker(""), "worker_id"),
    ("malformed worker id", lambda c: c.client.get_worker("not-a-uuid"), "worker_id"),
    ("stop without worker_id", lambda c: c.client.stop_worker(""), "worker_id"),
    ("delete without worker_id", lambda c: c.client.delete_worker(""), "worker_id"),
    (
        "oversized stop reason",
        lambda c: c.client.stop_worker(c.worker_id, reason="r" * 1001),
        "reason",
    ),
    # ListWorkers
    ("list negative page_size", lambda c: c.client.list_workers(page_size=-1), "page_size"),
    ("list garbage token", lambda c: c.client.list_workers(page_token="%%garbage%%"), "page_token"),
    (
        "list token of the transcript",
        lambda c: c.client.list_workers(page_token=c.transcript_token),
        "page_token",
    ),
    (
        "state filter 42",
        lambda c: c.catalog.ListWorkers(cpb.ListWorkersRequest(state=42)),  # type: ignore[arg-type]
        "state",
    ),
    # ManagementService
    (
        "diagnostics negative page_size",
        lambda c: c.client.list_diagnostics(page_size=-5),
        "page_size",
    ),
    (
        "diagnostics garbage token",
        lambda c: c.client.list_diagnostics(page_token="bm9wZQ"),
        "page_token",
    ),
    (
        "diagnostics token of the worker list",
        lambda c: c.client.list_diagnostics(page_token=c.workers_token),
        "page_token",
    ),
    # ObservationService
    (
        "transcript negative page_size",
        lambda c: c.client.get_transcript(c.worker_id, page_size=-1),
        "page_size",
    ),
    (
        "transcript garbage token",
        lambda c: c.client.get_transcript(c.worker_id, page_token="!!"),
        "page_token",
    ),
    (
        "transcript token of the worker list",
        lambda c: c.client.get_transcript(c.worker_id, page_token=c.workers_token),
        "page_token",
    ),
    ("events negative page_size", lambda c: c.client.list_events(page_size=-1), "page_size"),
    (
        "events worker filter not a uuid",
        lambda c: c.client.list_events(worker_id="nope"),
        "worker_id",
    ),
    (
        "subscribe worker filter not a uuid",
        lambda c: _first(c.observation.SubscribeEvents(opb.SubscribeEventsRequest(worker_id="x"))),
        "worker_id",
    ),
]

UNKNOWN_ID = str(uuid.uuid4())
# (id, call, expected client class, reason)
NOT_FOUND: list[tuple[str, Call, type[NotFound], str]] = [
    ("get unknown worker", lambda c: c.client.get_worker(UNKNOWN_ID), WorkerNotFound, UNKNOWN_ID),
    (
        "send to unknown worker",
        lambda c: c.client.send_input(UNKNOWN_ID, "hi"),
        WorkerNotFound,
        UNKNOWN_ID,
    ),
    ("stop unknown worker", lambda c: c.client.stop_worker(UNKNOWN_ID), WorkerNotFound, UNKNOWN_ID),
    (
        "delete unknown worker",
        lambda c: c.client.delete_worker(UNKNOWN_ID),
        WorkerNotFound,
        UNKNOWN_ID,
    ),
    (
        "transcript of unknown worker",
        lambda c: c.client.get_transcript(UNKNOWN_ID),
        WorkerNotFound,
        UNKNOWN_ID,
    ),
    (
        "usage of unknown worker",
        lambda c: c.client.get_usage(UNKNOWN_ID),
        WorkerNotFound,
        UNKNOWN_ID,
    ),
    ("get unknown run", lambda c: c.client.get_run(UNKNOWN_ID), RunNotFound, UNKNOWN_ID),
    ("cancel unknown run", lambda c: c.client.cancel_run(UNKNOWN_ID), RunNotFound, UNKNOWN_ID),
    (
        "unknown profile",
        lambda c: c.client.create_worker(profile="no-such-profile"),
        ProfileNotFound,
        "no-such-profile",
    ),
]


async def _first(call: Any) -> Any:
    """Read a server stream's first message (raises the stream's error)."""
    try:
        return await call.read()
    finally:
        call.cancel()


async def invoke(call: Call, ctx: Ctx) -> tuple[StatusCode, str, dict[str, str], str]:
    """Run a bad call; (status, reason, ErrorInfo metadata, message) from whichever API it used."""
    try:
        await call(ctx)
    except RuntimeServiceError as exc:
        return exc.code, exc.reason, dict(exc.metadata), exc.message
    except grpc.aio.AioRpcError as exc:
        info = error_info(exc)
        assert info.domain == "worker-runtime"
        return StatusCode(exc.code().name), info.reason, dict(info.metadata), exc.details() or ""
    raise AssertionError("the bad request succeeded")


@pytest.fixture
async def ctx(serve: ServeFactory) -> Ctx:
    served = await serve(limits=LIMITS)
    client = served.client
    w = (await client.create_worker()).worker
    await client.create_worker()
    run = (await client.send_input(w.worker_id, "two words")).run
    await client.wait_run(run.run_id, timeout=BOUND)
    return Ctx(
        client,
        w.worker_id,
        run.run_id,
        workers_token=(await client.list_workers(page_size=1)).next_page_token,
        transcript_token=(await client.get_transcript(w.worker_id, page_size=1)).next_page_token,
    )


@pytest.mark.parametrize(("call", "field"), [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
async def test_malformed_requests_are_invalid_argument_naming_the_field(
    ctx: Ctx, call: Call, field: str
) -> None:
    assert ctx.workers_token
    assert ctx.transcript_token
    workers_before = (await ctx.client.list_workers()).total_size

    code, reason, metadata, message = await invoke(call, ctx)

    assert code is StatusCode.INVALID_ARGUMENT
    assert reason == "INVALID_ARGUMENT"
    assert metadata.get("field") == field
    assert message.startswith(f"{field}: ")
    # a rejected request changed nothing
    assert (await ctx.client.list_workers()).total_size == workers_before


@pytest.mark.parametrize(
    ("call", "cls", "value"), [c[1:] for c in NOT_FOUND], ids=[c[0] for c in NOT_FOUND]
)
async def test_unknown_ids_are_not_found(
    ctx: Ctx, call: Call, cls: type[NotFound], value: str
) -> None:
    with pytest.raises(cls) as info:
        await call(ctx)
    assert info.value.code is StatusCode.NOT_FOUND
    assert info.value.reason == cls.reason
    assert value in info.value.metadata.values()


async def test_typed_invalid_argument_exposes_the_field(ctx: Ctx) -> None:
    with pytest.raises(InvalidArgument) as info:
        await ctx.client.send_input(ctx.worker_id, "")
    assert info.value.field == "text"


async def test_the_longest_request_id_works_with_an_initial_input(ctx: Ctx) -> None:
    created = await ctx.client.create_worker(request_id="r" * 16, initial_input="hello")
    assert created.initial_run is not None
    assert (await ctx.client.wait_run(created.initial_run.run_id, timeout=BOUND)).state is (
        RunState.COMPLETED
    )
    again = await ctx.client.create_worker(request_id="r" * 16, initial_input="hello")
    assert again.worker.worker_id == created.worker.worker_id


async def test_a_storm_of_bad_requests_harms_nothing(serve: ServeFactory) -> None:
    served = await serve(limits=LIMITS)
    client = served.client
    # the bystander: a worker mid-run while every bad request arrives, all at once
    bystander = (await client.create_worker(profile="slow", labels={"role": "bystander"})).worker
    accepted = await client.send_input(bystander.worker_id, BYSTANDER_TEXT)
    w = (await client.create_worker()).worker
    run = (await client.send_input(w.worker_id, "two words")).run
    await client.wait_run(run.run_id, timeout=BOUND)
    ctx = Ctx(
        client,
        w.worker_id,
        run.run_id,
        workers_token=(await client.list_workers(page_size=1)).next_page_token,
        transcript_token=(await client.get_transcript(w.worker_id, page_size=1)).next_page_token,
    )
    assert (await client.get_run(accepted.run.run_id)).state is RunState.RUNNING

    calls = [c[1] for c in INVALID] + [c[1] for c in NOT_FOUND]
    results = await asyncio.gather(*(invoke(call, ctx) for call in calls * 3))

    codes = {code for code, *_ in results}
    assert codes <= {StatusCode.INVALID_ARGUMENT, StatusCode.NOT_FOUND}
    health = health_pb2_grpc.HealthStub(client.channel)
    for service in ("", "worker_runtime.v1.InteractionService"):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=BOUND)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING
    # nothing was recorded as an internal error
    diagnostics = (await client.list_diagnostics()).items
    assert not [d for d in diagnostics if d.code == "RPC_INTERNAL_ERROR"]
    # the bystander's run went on undisturbed
    done = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert done.state is RunState.COMPLETED
    texts = [e.message.text async for e in client.iter_transcript(bystander.worker_id)]
    assert texts == [BYSTANDER_TEXT, BYSTANDER_TEXT]
    events = (await client.list_events(worker_id=bystander.worker_id)).events
    deltas = "".join(e.payload.text for e in events if isinstance(e.payload, TextDelta))
    assert deltas == BYSTANDER_TEXT
    # and the other data is intact: the same workers, the idle worker still takes input
    listed = await client.list_workers()
    assert {x.worker_id for x in listed.items} == {bystander.worker_id, w.worker_id}
    nxt = await client.send_input(w.worker_id, "still fine")
    assert (await client.wait_run(nxt.run.run_id, timeout=BOUND)).state is RunState.COMPLETED
