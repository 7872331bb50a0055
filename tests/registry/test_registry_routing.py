"""Routing through the registry over real serve subprocesses: distinct pinned identities, a worker
created on each runtime, inputs reaching exactly the runtime they were addressed to, typed errors
for unknown runtimes, runtime errors passing through as the client's classes, request ids minted
for every create/send, and placement (least loaded, the profile offered, never DRAINING)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest
from registry_support import RegistryFactory, Remote, RemoteFactory, status_of, wait_state
from serving import eventually

from runtime_client import (
    NoRuntimeAvailable,
    RegistryEvent,
    RunFinished,
    RunNotFound,
    RuntimeHealth,
    RuntimeNotFound,
    RuntimeRegistry,
    WorkerCreated,
    WorkerNotFound,
)
from runtime_server.embedded import EmbeddedRuntime


async def test_each_runtime_pinned_and_inputs_routed_to_their_runtime(
    remote: RemoteFactory, registry_factory: RegistryFactory
) -> None:
    r1, r2 = await remote("r1"), await remote("r2")
    embedded = await EmbeddedRuntime.open()
    registry = await registry_factory()
    registry.add_remote(r1.target, alias="one")
    registry.add_remote(r2.target, alias="two")
    registry.add_embedded(embedded, alias="here")
    try:
        await _three_runtimes(registry, r1, r2, embedded)
    finally:
        await registry.close()
        await embedded.close()


async def _three_runtimes(
    registry: RuntimeRegistry, r1: Remote, r2: Remote, embedded: EmbeddedRuntime
) -> None:
    await registry.start()
    s1 = await wait_state(registry, "one", RuntimeHealth.READY)
    s2 = await wait_state(registry, "two", RuntimeHealth.READY)
    s3 = await wait_state(registry, "here", RuntimeHealth.READY)
    assert (s1.kind, s2.kind, s3.kind) == ("remote", "remote", "embedded")
    c1, c2 = r1.proc.client(), r2.proc.client()
    # the pinned ids are the runtimes' own, and distinct
    assert s1.runtime_id == (await c1.get_runtime()).runtime_id
    assert s2.runtime_id == (await c2.get_runtime()).runtime_id
    assert s3.runtime_id == (await embedded.get_runtime()).runtime_id
    assert len({s1.runtime_id, s2.runtime_id, s3.runtime_id}) == 3
    assert s1.runtime_id
    assert s2.runtime_id
    assert s3.runtime_id
    rid3, w3 = await registry.create_worker(profile="echo", runtime_id=s3.runtime_id)
    assert rid3 == s3.runtime_id
    assert (await embedded.get_worker(w3.worker.worker_id)) == w3.worker
    # no address leaks into a status
    assert r1.target not in repr(registry.runtimes())

    rid1, w1 = await registry.create_worker(profile="slow", runtime_id=s1.runtime_id)
    rid2, w2 = await registry.create_worker(profile="slow", runtime_id=s2.runtime_id)
    assert (rid1, rid2) == (s1.runtime_id, s2.runtime_id)
    accepted = await registry.send_input(rid2, w2.worker.worker_id, "routed to two")
    # visible on runtime 2 when asked directly, absent on runtime 1
    run = await c2.get_run(accepted.run.run_id)
    assert run.worker_id == w2.worker.worker_id
    with pytest.raises(RunNotFound):
        await c1.get_run(accepted.run.run_id)
    # a request id was minted: the runtime's log shows the input once
    page = await c2.list_events(worker_id=w2.worker.worker_id)
    assert sum(type(e.payload).__name__ == "InputCommitted" for e in page.events) == 1
    # the cache shows both workers with their runtime
    await eventually(lambda: len(registry.list_workers()) == 3, what="the workers cached")
    views = {v.worker.worker_id: v for v in registry.list_workers()}
    assert views[w1.worker.worker_id].runtime_id == rid1
    assert views[w2.worker.worker_id].runtime_id == rid2
    assert not any(v.stale for v in views.values())
    assert [v.worker.worker_id for v in registry.list_workers(runtime_id=rid1)] == [
        w1.worker.worker_id
    ]


async def test_typed_errors_and_pass_through(
    remote: RemoteFactory, registry_factory: RegistryFactory
) -> None:
    r1 = await remote("r1")
    registry = await registry_factory()
    registry.add_remote(r1.target, alias="one")
    await registry.start()
    s1 = await wait_state(registry, "one", RuntimeHealth.READY)
    assert s1.runtime_id
    with pytest.raises(RuntimeNotFound) as nf:
        registry.handle("no-such-runtime")
    assert nf.value.reason == "RUNTIME_NOT_FOUND"
    assert nf.value.runtime_id == "no-such-runtime"
    handle = registry.handle(s1.runtime_id)
    with pytest.raises(WorkerNotFound):
        await handle.get_worker("0190a0a0-0000-7000-8000-000000000000")
    with pytest.raises(NoRuntimeAvailable) as none:
        await registry.create_worker(profile="not-offered-anywhere")
    assert none.value.profile == "not-offered-anywhere"
    assert none.value.reason == "NO_RUNTIME_AVAILABLE"


async def test_a_run_through_the_registry_streams_to_its_end(
    remote: RemoteFactory, registry_factory: RegistryFactory
) -> None:
    r1 = await remote("r1")
    registry = await registry_factory()
    registry.add_remote(r1.target, alias="one")
    await registry.start()
    s1 = await wait_state(registry, "one", RuntimeHealth.READY)
    assert s1.runtime_id
    rid, created = await registry.create_worker(profile="slow")
    accepted = await registry.send_input(rid, created.worker.worker_id, "a b c")
    stream = registry.subscribe(
        runtime_id=rid, worker_id=created.worker.worker_id, after_seq=accepted.seq
    )
    seen = []
    async with contextlib.aclosing(stream):
        async with asyncio.timeout(30):
            async for item in stream:
                assert isinstance(item, RegistryEvent)
                seen.append(item.event)
                if isinstance(item.event.payload, RunFinished):
                    break
    direct = await r1.proc.client().list_events(
        after_seq=accepted.seq, worker_id=created.worker.worker_id
    )
    assert [e.seq for e in seen] == [e.seq for e in direct.events][: len(seen)]
    assert status_of(registry, "one").state is RuntimeHealth.READY


async def test_a_subscription_over_all_runtimes_merges_them_from_now(
    remote: RemoteFactory, registry_factory: RegistryFactory
) -> None:
    r1 = await remote("r1")
    embedded = await EmbeddedRuntime.open()
    try:
        old = (await embedded.create_worker(profile="echo")).worker  # before: not delivered
        registry = await registry_factory()
        registry.add_remote(r1.target, alias="one")
        registry.add_embedded(embedded, alias="here")
        await registry.start()
        rid1 = (await wait_state(registry, "one", RuntimeHealth.READY)).runtime_id
        rid2 = (await wait_state(registry, "here", RuntimeHealth.READY)).runtime_id
        assert rid1, "a READY runtime has its id"
        assert rid2, "a READY runtime has its id"
        items: list[object] = []
        stream = registry.subscribe(payload_types=["worker_created"])

        async def follow() -> None:
            async for item in stream:
                items.append(item)

        task = asyncio.ensure_future(follow())
        try:
            created = {}
            # each runtime's feed starts from its last seq when first reached (a create before
            # that is not delivered): keep creating until both runtimes have delivered one
            for rid in (rid1, rid2):
                assert rid
                _, c = await registry.create_worker(profile="echo", runtime_id=rid)
                created[c.worker.worker_id] = rid

            def seen() -> dict[str, str]:
                return {
                    i.event.payload.worker.worker_id: i.runtime_id
                    for i in items
                    if isinstance(i, RegistryEvent) and isinstance(i.event.payload, WorkerCreated)
                }

            async def both() -> bool:
                if set(seen().values()) == {rid1, rid2}:
                    return True
                for rid in (rid1, rid2):  # a feed not yet started misses a create: make more
                    _, c = await registry.create_worker(profile="echo", runtime_id=rid)
                    created[c.worker.worker_id] = rid
                return False

            await eventually(both, interval=0.2, what="a WorkerCreated from each runtime")
            got = seen()
            assert {got[w] for w in got} == {rid1, rid2}
            assert all(got[w] == created[w] for w in got)  # each tagged with its own runtime
            assert old.worker_id not in got  # nothing from before the subscription
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    finally:
        await registry.close()
        await embedded.close()
