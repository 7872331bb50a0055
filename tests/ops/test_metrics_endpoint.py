"""``--metrics-listen``: a real server with the metrics endpoint on port 0, driven by the real
client, scraped over HTTP and parsed with prometheus_client's own parser."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import AsyncIterator

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families
from serving import eventually

from runtime_client import RunState, RuntimeClient, WorkerNotFound
from runtime_server import Runtime
from runtime_server.errors import SubscriberLagging
from runtime_server.grpc import OpsOptions, RuntimeServer, start_server
from runtime_server.model import Limits
from runtime_server.runtime import Subscription, parse_config

# a well-formed id no worker has (a malformed one is INVALID_ARGUMENT, not NOT_FOUND)
UNKNOWN_WORKER = "0190a0a0-0000-7000-8000-00000000dead"

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
CATALOG = "worker_runtime.v1.CatalogService"
BOUND = 30.0  # seconds: a safety net on a shared machine, never a speed assertion


async def http_get(port: int, path: str = "/metrics") -> tuple[str, str]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"GET {path} HTTP/1.0\r\nHost: x\r\n\r\n".encode())
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), BOUND)
    writer.close()
    head, _, body = raw.decode().partition("\r\n\r\n")
    return head, body


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(port: int) -> Samples:
    head, body = await http_get(port)
    assert head.startswith("HTTP/1.0 200"), head
    out: Samples = {}
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples: Samples, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


@pytest.fixture
async def metered() -> AsyncIterator[tuple[RuntimeServer, RuntimeClient]]:
    config = parse_config(
        {"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 5}}}}
    )
    runtime = Runtime(config=config)
    server = await start_server(
        runtime, "127.0.0.1:0", ops=OpsOptions(metrics_listen="127.0.0.1:0")
    )
    client = RuntimeClient(f"127.0.0.1:{server.port}")
    yield server, client
    await client.close()
    await server.stop(0)


async def test_scrape_after_a_run_shows_it_and_a_not_found(
    metered: tuple[RuntimeServer, RuntimeClient],
) -> None:
    server, client = metered
    assert server.metrics_port > 0
    worker = (await client.create_worker(profile="slow")).worker
    accepted = await client.send_input(worker.worker_id, "one two three four")
    run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert run.state is RunState.COMPLETED
    with pytest.raises(WorkerNotFound):
        await client.get_worker(UNKNOWN_WORKER)
    events = client.subscribe(after_seq=0, batched=False)
    seen = 0
    async with asyncio.timeout(BOUND):
        async for event in events:
            seen += 1
            if event.seq >= accepted.seq + 2:
                break
    await events.aclose()

    samples = await scrape(server.metrics_port)
    # runs by terminal state, with a duration
    assert value(samples, "worker_runtime_runs_finished_total", state="COMPLETED") == 1
    assert value(samples, "worker_runtime_run_duration_seconds_count") == 1
    # RPCs by code, the NOT_FOUND included, with go-grpc-prometheus' names and labels
    unary = {"grpc_type": "unary", "grpc_service": CATALOG}
    assert value(samples, "grpc_server_started_total", **unary, grpc_method="GetWorker") == 1
    assert (
        value(samples, "grpc_server_handled_total", **unary, grpc_method="GetWorker",
              grpc_code="NOT_FOUND") == 1
    )  # fmt: skip
    assert (
        value(samples, "grpc_server_handled_total", **unary, grpc_method="CreateWorker",
              grpc_code="OK") == 1
    )  # fmt: skip
    assert value(samples, "grpc_server_msg_sent_total", **unary, grpc_method="GetWorker") == 0
    assert (
        value(samples, "grpc_server_handling_seconds_count", **unary, grpc_method="CreateWorker")
        == 1
    )
    # the stream: one message per event sent
    stream = {"grpc_type": "server_stream", "grpc_method": "SubscribeEvents"}
    assert total(samples, "grpc_server_msg_sent_total", **stream) >= seen
    # gauges and counters of the domain
    assert value(samples, "worker_runtime_workers", state="IDLE") == 1
    assert value(samples, "worker_runtime_runs_active") == 0
    info = await client.get_runtime()
    assert value(samples, "worker_runtime_last_seq") == info.last_seq
    assert value(samples, "worker_runtime_events_committed_total") == info.last_seq
    assert value(samples, "worker_runtime_state", state="SERVING") == 1
    assert (
        value(samples, "worker_runtime_provider_requests_total", provider="echo", model="echo",
              outcome="ok") == 1
    )  # fmt: skip
    assert total(samples, "worker_runtime_tokens_total", provider="echo", kind="output") > 0
    assert value(samples, "worker_runtime_provider_first_byte_seconds_count", provider="echo",
                 model="echo") == 1  # fmt: skip
    assert value(samples, "worker_runtime_store_commit_seconds_count") > 0
    assert value(samples, "worker_runtime_store_commit_events_sum") == info.last_seq
    # never an id as a label value (the info metric names the runtime itself, nothing else)
    for (name, labels), _ in samples.items():
        for key, label in labels:
            if name == "worker_runtime_info" and key == "runtime_id":
                assert label == info.runtime_id
                continue
            assert not UUID.search(label), (name, key, label)
            assert label != UNKNOWN_WORKER


async def test_denied_and_unknown_calls_are_counted_without_caller_chosen_labels() -> None:
    runtime = Runtime()
    server = await start_server(
        runtime, "127.0.0.1:0", auth_token="s3cret-token",
        ops=OpsOptions(metrics_listen="127.0.0.1:0"),
    )  # fmt: skip
    client = RuntimeClient(f"127.0.0.1:{server.port}")  # no token
    try:
        with pytest.raises(Exception, match="bearer"):
            await client.get_runtime()
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary("/made.up.Service/Whatever")
            with pytest.raises(grpc.aio.AioRpcError):
                await call(b"")
        samples = await scrape(server.metrics_port)
        assert (
            value(samples, "grpc_server_handled_total", grpc_type="unary",
                  grpc_service="worker_runtime.v1.ManagementService", grpc_method="GetRuntime",
                  grpc_code="UNAUTHENTICATED") == 1
        )  # fmt: skip
        labels = {v for (_, ls), _ in samples.items() for _, v in ls}
        assert "made.up.Service" not in labels
        assert "Whatever" not in labels
        assert total(samples, "grpc_server_started_total", grpc_service="unknown") == 1
    finally:
        await client.close()
        await server.stop(0)


async def test_the_endpoint_answers_only_metrics(
    metered: tuple[RuntimeServer, RuntimeClient],
) -> None:
    server, _ = metered
    head, _ = await http_get(server.metrics_port, "/")
    assert head.startswith("HTTP/1.0 404")
    reader, writer = await asyncio.open_connection("127.0.0.1", server.metrics_port)
    writer.write(b"not http at all\r\n\r\n")
    await writer.drain()
    assert (await asyncio.wait_for(reader.read(), BOUND)).startswith(b"HTTP/1.0 405")
    writer.close()
    samples = await scrape(server.metrics_port)  # still serving
    assert value(samples, "worker_runtime_state", state="SERVING") == 1


def test_the_core_never_imports_prometheus() -> None:
    code = (
        "import sys, runtime_server.runtime, runtime_server.store, engine, runtime_server.cli\n"
        "import runtime_server.grpc\n"
        "print(sorted(m for m in sys.modules if m.startswith('prometheus_client')))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert proc.stdout.strip() == "[]"


async def test_metrics_and_health_ports_are_off_by_default() -> None:
    runtime = Runtime()
    server = await start_server(runtime, "127.0.0.1:0")
    try:
        assert server.metrics_port == 0
        assert server.health_port == 0
    finally:
        await server.stop(0)


async def drain(sub: Subscription) -> None:
    while await sub.next(0) is not None:
        pass


async def test_subscribers_cut_for_lagging_and_at_shutdown_are_counted_by_reason() -> None:
    runtime = Runtime(limits=Limits(subscriber_buffer_events=8))
    server = await start_server(
        runtime, "127.0.0.1:0", ops=OpsOptions(metrics_listen="127.0.0.1:0")
    )
    client = RuntimeClient(f"127.0.0.1:{server.port}")
    try:
        stalled = runtime.subscribe()  # never read: cut once it is 8 events behind
        reader = runtime.subscribe()  # read as events come: ended only by the shutdown below
        got: list[object] = []

        async def read() -> None:
            async for event in reader:
                got.append(event)

        reading = asyncio.create_task(read())
        worker = (await client.create_worker()).worker
        accepted = await client.send_input(worker.worker_id, " ".join(["word"] * 30))
        await client.wait_run(accepted.run.run_id, timeout=BOUND)
        samples = await scrape(server.metrics_port)
        assert value(samples, "worker_runtime_subscriber_cuts_total", reason="lagging") == 1

        async def only_the_reader_left() -> bool:
            # wait_run's own subscription ends server-side a moment after the run does
            return value(await scrape(server.metrics_port), "worker_runtime_subscribers") == 1

        await eventually(only_the_reader_left, within=BOUND, what="one subscriber (the reader)")
        with pytest.raises(SubscriberLagging):
            await drain(stalled)
        runtime._require_log().close_all()
        await asyncio.wait_for(reading, BOUND)
        assert len(got) > 30
        assert value(await scrape(server.metrics_port),
                     "worker_runtime_subscriber_cuts_total", reason="shutdown") == 1  # fmt: skip
    finally:
        await client.close()
        await server.stop(0)


async def test_a_bidi_stream_counts_each_message_it_received_and_sent(
    metered: tuple[RuntimeServer, RuntimeClient],
) -> None:
    """Server reflection is the one bidirectional method: every request read and every response
    written counts, under its grpc_type, as for the go-grpc-prometheus dashboards."""
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server, client = metered
    stub = reflection_pb2_grpc.ServerReflectionStub(client.channel)
    requests = [reflection_pb2.ServerReflectionRequest(list_services="") for _ in range(3)]
    call = stub.ServerReflectionInfo(iter(requests), timeout=BOUND)
    answers = [answer async for answer in call]
    assert len(answers) == 3
    assert await call.code() == grpc.StatusCode.OK

    bidi = {
        "grpc_type": "bidi_stream",
        "grpc_service": "grpc.reflection.v1alpha.ServerReflection",
        "grpc_method": "ServerReflectionInfo",
    }

    async def counted() -> bool:  # the handled count lands as the call ends on the server
        samples = await scrape(server.metrics_port)
        return value(samples, "grpc_server_handled_total", **bidi, grpc_code="OK") == 1

    await eventually(counted, within=BOUND, what="the bidi call counted")
    samples = await scrape(server.metrics_port)
    assert value(samples, "grpc_server_started_total", **bidi) == 1
    assert value(samples, "grpc_server_msg_received_total", **bidi) == 3
    assert value(samples, "grpc_server_msg_sent_total", **bidi) == 3
