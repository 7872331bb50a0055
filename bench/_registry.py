"""Section ``registry`` (issue 11): what RuntimeRegistry costs on top of the handle it routes to.

* remote run: n sequential runs on one worker — ``send_input`` then wait for the run's
  RunFinished on a worker subscription opened once — through ``registry.send_input`` +
  ``registry.subscribe(runtime_id=, worker_id=)`` vs the same calls on the ``RuntimeClient``
  directly, against one ``serve --store memory`` subprocess; alternated in slices so noise hits
  both. Target: the registry's rate >= 1/1.1 of the direct rate (overhead <= 1.1x).
* embedded run: the same, in-process, as runs per CPU-second of the one thread everything runs
  on (the machine's load moves wall-clock rates of alternating slices by ±30 % and more): the
  registry over an ``EmbeddedRuntime`` vs that ``EmbeddedRuntime`` directly (the registry's own
  overhead, target as above), and vs the bare
  ``Runtime`` (runtime_server values, no conversion to the client's models: informative, the
  difference is the embedded handle's conversion, not the registry).
* list_workers: latency of ``registry.list_workers()`` (every worker) and of a label-filtered
  call over 3 embedded runtimes x 10,000 workers each, from the cache.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any

from bench._common import Row, before_slice, running, runtime_argv, say, show
from runtime_client import (
    RegistryEvent,
    RegistryOptions,
    RunFinished,
    RuntimeClient,
    RuntimeHandle,
    RuntimeHealth,
    RuntimeRegistry,
)
from runtime_server import Runtime
from runtime_server.embedded import EmbeddedRuntime
from runtime_server.model import RunFinished as ServerRunFinished

SECTION = "registry"
TARGET = 1 / 1.1  # rate ratio: registry / direct


async def _until(events: AsyncIterator[Any], run_id: str) -> None:
    async for item in events:
        ev = item.event if isinstance(item, RegistryEvent) else item
        payload = ev.payload
        if isinstance(payload, RunFinished | ServerRunFinished) and payload.run.run_id == run_id:
            return
    raise RuntimeError("the stream ended before the run finished")


class Loop:
    """One worker, one subscription; ``runs(n)``: n sequential runs (send, wait RunFinished)."""

    def __init__(
        self,
        send: Callable[[str], Awaitable[str]],
        events: AsyncGenerator[Any, None],
    ) -> None:
        self._send = send
        self._events = events

    async def runs(self, n: int) -> int:
        for _ in range(n):
            run_id = await self._send("hello world")
            await _until(self._events, run_id)
        return n

    async def close(self) -> None:
        await self._events.aclose()


async def direct_loop(handle: RuntimeHandle, *, keyed: bool = False) -> Loop:
    """Direct calls; ``keyed``: each send carries a fresh request_id, as the registry's do."""
    created = await handle.create_worker(profile="echo")
    wid = created.worker.worker_id

    async def send(text: str) -> str:
        key = str(uuid.uuid4()) if keyed else ""
        return (await handle.send_input(wid, text, request_id=key)).run.run_id

    return Loop(send, handle.subscribe(wid, after_seq=created.seq))


async def runtime_loop(runtime: Runtime) -> Loop:
    created = await runtime.create_worker(profile="echo")
    wid = created.worker.worker_id

    async def send(text: str) -> str:
        return (await runtime.send_input(wid, text)).run.run_id

    async def events() -> AsyncGenerator[Any, None]:
        sub = runtime.subscribe(wid, after_seq=created.seq)
        try:
            async for ev in sub:
                yield ev
        finally:
            sub.close()

    return Loop(send, events())


async def registry_loop(registry: RuntimeRegistry, runtime_id: str) -> Loop:
    rid, created = await registry.create_worker(profile="echo", runtime_id=runtime_id)
    wid = created.worker.worker_id

    async def send(text: str) -> str:
        return (await registry.send_input(rid, wid, text)).run.run_id

    return Loop(send, registry.subscribe(runtime_id=rid, worker_id=wid, after_seq=created.seq))


async def alternate(
    loops: list[Loop], n: int, slices: int, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Rates (runs per second of ``clock``) of each loop, run in alternating slices."""
    times = [0.0] * len(loops)
    for _ in range(slices):
        for i, loop in enumerate(loops):
            before_slice()
            start = clock()
            await loop.runs(n // slices)
            times[i] += clock() - start
    return [n // slices * slices / t for t in times]


async def _ready(registry: RuntimeRegistry) -> list[str]:
    await registry.start()
    ids = []
    for status in registry.runtimes():
        if status.state is not RuntimeHealth.READY or not status.runtime_id:
            raise RuntimeError(f"runtime {status.alias} is {status.state}")
        ids.append(status.runtime_id)
    return ids


async def remote_rows(runs: int, reps: int) -> Row:
    row = Row(SECTION, "remote run: runs/s via registry vs RuntimeClient", "/s", target=TARGET)
    for rep in range(1, reps + 1):
        async with running(runtime_argv("--store", "memory")) as server:
            client = RuntimeClient(server.target, timeout=120.0)
            registry = RuntimeRegistry(RegistryOptions(call_timeout_s=120.0))
            registry.add_remote(server.target)
            try:
                [rid] = await _ready(registry)
                loops = [await direct_loop(client), await registry_loop(registry, rid)]
                try:
                    await alternate(loops, 40, 2)  # warm up
                    direct, via = await alternate(loops, runs, 6)
                finally:
                    for loop in loops:
                        await loop.close()
            finally:
                await registry.close()
                await client.close()
        row.baseline.append(direct)
        row.product.append(via)
        show(row, rep)
    row.note = (
        "echo profile, 2 words, sequential runs on one worker each, alternated in 6 slices; "
        "serve --store memory in a subprocess; the registry adds its routing checks, a minted "
        "request_id per send (an idempotency key the runtime records) and a RegistryEvent "
        "wrapper per event of its (inline, one-runtime) subscription"
    )
    return row


async def embedded_rows(runs: int, reps: int) -> list[Row]:
    vs_handle = Row(
        SECTION, "embedded run: runs/s via registry vs EmbeddedRuntime", "/s", target=TARGET
    )
    vs_keyed = Row(
        SECTION,
        "embedded run: via registry vs EmbeddedRuntime + request_id",
        "/s",
        target=TARGET,
    )
    vs_runtime = Row(SECTION, "embedded run: runs/s via registry vs bare Runtime", "/s")
    for rep in range(1, reps + 1):
        async with contextlib.AsyncExitStack() as stack:
            embedded = await EmbeddedRuntime.open()
            stack.push_async_callback(embedded.close)
            registry = RuntimeRegistry()
            registry.add_embedded(embedded)
            stack.push_async_callback(registry.close)
            [rid] = await _ready(registry)
            loops = [
                await runtime_loop(embedded.runtime),
                await direct_loop(embedded),
                await direct_loop(embedded, keyed=True),
                await registry_loop(registry, rid),
            ]
            try:
                await alternate(loops, 60, 3)  # warm up
                # In-process, everything runs on this thread: its CPU time is what each side
                # costs, and unlike wall time the machine's load does not move it.
                bare, direct, keyed, via = await alternate(loops, runs, 6, time.thread_time)
            finally:
                for loop in loops:
                    await loop.close()
        vs_handle.baseline.append(direct)
        vs_handle.product.append(via)
        vs_keyed.baseline.append(keyed)
        vs_keyed.product.append(via)
        vs_runtime.baseline.append(bare)
        vs_runtime.product.append(via)
        show(vs_handle, rep)
        show(vs_keyed, rep)
        show(vs_runtime, rep)
    vs_handle.note = (
        "in-process, memory store, runs per CPU-second of the bench's thread (everything runs "
        "on it); includes the request_id the registry puts on every send "
        "(the runtime then records an idempotency key: see the next row)"
    )
    vs_keyed.note = (
        "the same, with the direct side also sending a request_id: the registry's own routing "
        "and stream overhead"
    )
    vs_runtime.note = (
        "informative: includes EmbeddedRuntime's conversion to the client's models, which the "
        "bare Runtime (server values) does not do"
    )
    return [vs_handle, vs_keyed, vs_runtime]


async def list_rows(workers: int, calls: int) -> list[Row]:
    every = Row(
        SECTION,
        f"list_workers(): 3 runtimes x {workers:,} workers",
        "ms",
        kind="abs",
        target=100.0,
        direction="max",
    )
    some = Row(
        SECTION,
        f"list_workers(labels=..): 3 x {workers:,} workers, 1% match",
        "ms",
        kind="abs",
        target=100.0,
        direction="max",
    )
    async with contextlib.AsyncExitStack() as stack:
        registry = RuntimeRegistry()
        for i in range(3):
            embedded = await EmbeddedRuntime.open()
            stack.push_async_callback(embedded.close)
            for n in range(workers):
                labels = {"team": "a" if n % 100 == 0 else "b"}
                await embedded.runtime.create_worker(profile="echo", labels=labels)
            registry.add_embedded(embedded, alias=f"e{i}")
        stack.push_async_callback(registry.close)
        await _ready(registry)
        total = len(registry.list_workers())
        if total != 3 * workers:
            raise RuntimeError(f"list_workers saw {total} of {3 * workers}")
        for _ in range(calls):
            t = time.perf_counter()
            registry.list_workers()
            every.product.append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            registry.list_workers(labels={"team": "a"})
            some.product.append((time.perf_counter() - t) * 1000)
    for row in (every, some):
        p = sorted(row.product)
        row.note = f"median of {calls} calls; max {p[-1]:.1f} ms; from the cache, no I/O"
        say(f"  [{SECTION}] {row.name}: median {statistics.median(p):.1f} ms, max {p[-1]:.1f} ms")
    return [every, some]


async def run(quick: bool) -> list[Row]:
    runs, reps, workers = (120, 3, 2_000) if quick else (600, 3, 10_000)
    rows = [await remote_rows(runs, reps)]
    rows += await embedded_rows(runs, reps)
    rows += await list_rows(workers, 20 if quick else 50)
    return rows
