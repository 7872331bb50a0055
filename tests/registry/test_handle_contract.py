"""The RuntimeHandle contract, one suite run unchanged over every kind of handle (as the store
contract suite runs over both stores): a RuntimeClient over a real grpc.aio server on loopback,
an EmbeddedRuntime in this process, and each of them routed through RuntimeRegistry.handle().
Same models back, same error classes raised, whatever the handle."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest
from registry_support import FAST

from runtime_client import (
    BusyPolicy,
    ConfigBundleInUse,
    CursorAhead,
    InvalidArgument,
    RunFinished,
    RunState,
    RuntimeClient,
    RuntimeHandle,
    RuntimeHealth,
    RuntimeInfo,
    RuntimeRegistry,
    TextDelta,
    WorkerBusy,
    WorkerNotFound,
    WorkerState,
)
from runtime_server import Runtime
from runtime_server.embedded import EmbeddedRuntime
from runtime_server.grpc import start_server
from runtime_server.runtime import parse_config

CONFIG = {"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 100}}}}
KINDS = ["remote", "embedded", "remote-routed", "embedded-routed"]
UNKNOWN = "0190a0a0-0000-7000-8000-000000000000"


@pytest.fixture(params=KINDS)
async def handle(request: pytest.FixtureRequest) -> AsyncIterator[RuntimeHandle]:
    kind: str = request.param
    async with contextlib.AsyncExitStack() as stack:
        runtime = Runtime(config=parse_config(CONFIG))
        h: RuntimeHandle
        if kind.startswith("remote"):
            server = await start_server(runtime, "127.0.0.1:0")
            stack.push_async_callback(server.stop, 0)
            client = RuntimeClient(f"127.0.0.1:{server.port}")
            stack.push_async_callback(client.close)
            h = client
        else:
            await runtime.start()
            stack.push_async_callback(runtime.close, 0)
            h = EmbeddedRuntime(runtime)
        if kind.endswith("routed"):
            registry = RuntimeRegistry(FAST)
            if kind.startswith("remote"):
                registry.add_remote(f"127.0.0.1:{server.port}", alias="it")
            else:
                registry.add_embedded(h, alias="it")
            await registry.start()
            stack.push_async_callback(registry.close)
            [status] = registry.runtimes()
            assert status.state is RuntimeHealth.READY
            assert status.runtime_id == runtime.runtime_id
            h = registry.handle(status.runtime_id)
        yield h


async def test_runtime_and_profiles(handle: RuntimeHandle) -> None:
    info = await handle.get_runtime()
    assert isinstance(info, RuntimeInfo)
    assert info.runtime_id
    assert "payload_type_filter" in info.capabilities.features
    names = {p.name for p in await handle.list_profiles()}
    assert {"echo", "slow"} <= names
    assert (await handle.list_diagnostics()).items is not None
    assert (await handle.list_workspace_claims()).items == ()


async def test_a_worker_and_a_run_end_to_end(handle: RuntimeHandle) -> None:
    created = await handle.create_worker(profile="echo", display_name="c", labels={"k": "v"})
    worker = created.worker
    assert worker.state is WorkerState.IDLE
    assert await handle.get_worker(worker.worker_id) == worker
    page = await handle.list_workers(labels={"k": "v"})
    assert [w.worker_id for w in page.items] == [worker.worker_id]
    assert [w.worker_id async for w in handle.iter_workers()] == [worker.worker_id]
    accepted = await handle.send_input(worker.worker_id, "hello contract")
    run = await handle.wait_run(accepted.run.run_id, timeout=30)
    assert run.state is RunState.COMPLETED
    assert (await handle.get_run(run.run_id)).state is RunState.COMPLETED
    texts = [e.message.text async for e in handle.iter_transcript(worker.worker_id)]
    assert texts == ["hello contract", "hello contract"]
    assert len((await handle.get_transcript(worker.worker_id)).items) == 2
    events = (await handle.list_events(worker_id=worker.worker_id)).events
    assert any(isinstance(e.payload, RunFinished) for e in events)
    assert (await handle.get_usage(worker.worker_id)).runs == 1


async def test_idempotent_requests(handle: RuntimeHandle) -> None:
    a = await handle.create_worker(profile="echo", request_id="create-1")
    b = await handle.create_worker(profile="echo", request_id="create-1")
    assert a.worker.worker_id == b.worker.worker_id
    x = await handle.send_input(a.worker.worker_id, "once", request_id="send-1")
    y = await handle.send_input(a.worker.worker_id, "once", request_id="send-1")
    assert x.run.run_id == y.run.run_id


async def test_errors_are_the_same_classes(handle: RuntimeHandle) -> None:
    with pytest.raises(WorkerNotFound):
        await handle.get_worker(UNKNOWN)
    worker = (await handle.create_worker(profile="slow")).worker
    first = await handle.send_input(worker.worker_id, "a b c d e f g h i j")
    with pytest.raises(WorkerBusy) as busy:
        await handle.send_input(worker.worker_id, "again", busy_policy=BusyPolicy.REJECT)
    assert busy.value.active_run_id == first.run.run_id
    cancelled = await handle.cancel_run(first.run.run_id)
    assert cancelled.state is RunState.CANCELLED
    stream = handle.subscribe(payload_types=["nope"])
    with pytest.raises(InvalidArgument) as bad:
        await anext(stream)
    assert bad.value.field == "payload_types"
    last = (await handle.get_runtime()).last_seq
    with pytest.raises(CursorAhead):
        await anext(handle.subscribe(after_seq=last + 100))


async def test_filtered_subscription_and_worker_lifecycle(handle: RuntimeHandle) -> None:
    worker = (await handle.create_worker(profile="echo")).worker
    accepted = await handle.send_input(worker.worker_id, "x y z")
    kinds: list[str] = []
    stream = handle.subscribe(
        worker.worker_id, after_seq=0, payload_types=["worker_created", "run_finished"]
    )
    async with contextlib.aclosing(stream):
        async with asyncio.timeout(30):
            async for event in stream:
                assert not isinstance(event.payload, TextDelta)
                kinds.append(type(event.payload).KIND)
                if isinstance(event.payload, RunFinished):
                    assert event.payload.run.run_id == accepted.run.run_id
                    break
    assert kinds == ["worker_created", "run_finished"]
    stopped = await handle.stop_worker(worker.worker_id)
    assert stopped.state is WorkerState.STOPPED
    await handle.delete_worker(worker.worker_id)
    with pytest.raises(WorkerNotFound):
        await handle.get_worker(worker.worker_id)


async def test_config_bundles(handle: RuntimeHandle) -> None:
    """Issue 13: the bundle calls over every handle (routed ones included)."""
    content = b'[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\n'
    put = await handle.put_bundle("team", content)
    assert put.created
    assert not (await handle.put_bundle("team", content)).created
    w = (await handle.create_worker(profile="helper", config_bundle=put.bundle.ref)).worker
    got = await handle.get_bundle("team", put.bundle.digest, include_content=True)
    assert (got.content, got.bundle.referencing_workers) == (content, (w.worker_id,))
    assert [b.id for b in (await handle.list_bundles()).items] == ["team"]
    with pytest.raises(ConfigBundleInUse):
        await handle.delete_bundle("team", put.bundle.digest)
    await handle.delete_worker(w.worker_id)
    await handle.delete_bundle("team", put.bundle.digest)
    assert (await handle.list_bundles()).total_size == 0
