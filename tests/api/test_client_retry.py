"""Which unary calls the typed client retries (issue 7 item 9), counted on the wire with a client
interceptor: calls that are safe to repeat are retried after UNAVAILABLE and RUNTIME_DRAINING
within the RetryPolicy's bounds; CreateWorker/SendInput without a request_id are sent once."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from serving import eventually, unassigned_port  # nothing listens there

from runtime_client import (
    NO_RETRY,
    RetryPolicy,
    RuntimeClient,
    RuntimeDraining,
    Unavailable,
)
from runtime_server.runtime import RuntimeState

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0
QUICK = RetryPolicy(max_attempts=4, budget_s=5.0, initial_backoff_s=0.01, max_backoff_s=0.05)


class Counting(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    """Counts attempts per method name."""

    def __init__(self) -> None:
        self.attempts: Counter[str] = Counter()

    async def intercept_unary_unary(
        self, continuation: Callable[..., Awaitable[Any]], details: Any, request: Any
    ) -> Any:
        method = details.method
        name = method.decode() if isinstance(method, bytes) else method
        self.attempts[name.rsplit("/", 1)[-1]] += 1
        return await continuation(details, request)


@pytest.fixture
async def counted() -> AsyncIterator[Callable[..., tuple[RuntimeClient, Counting]]]:
    channels: list[grpc.aio.Channel] = []

    def make(target: str, retry: RetryPolicy = QUICK) -> tuple[RuntimeClient, Counting]:
        counter = Counting()
        channel = grpc.aio.insecure_channel(target, interceptors=[counter])
        channels.append(channel)
        return RuntimeClient.from_channel(channel, retry=retry, timeout=BOUND), counter

    yield make
    for channel in channels:
        await channel.close()


WID = "0190a0a0-0000-7000-8000-000000000000"
SAFE: dict[str, Callable[[RuntimeClient], Awaitable[Any]]] = {
    "GetRuntime": lambda c: c.get_runtime(),
    "ListDiagnostics": lambda c: c.list_diagnostics(),
    "ListProfiles": lambda c: c.list_profiles(),
    "GetWorker": lambda c: c.get_worker(WID),
    "ListWorkers": lambda c: c.list_workers(),
    "StopWorker": lambda c: c.stop_worker(WID),
    "DeleteWorker": lambda c: c.delete_worker(WID),
    "GetRun": lambda c: c.get_run(WID),
    "CancelRun": lambda c: c.cancel_run(WID),
    "GetTranscript": lambda c: c.get_transcript(WID),
    "ListEvents": lambda c: c.list_events(),
    "GetUsage": lambda c: c.get_usage(),
    "CreateWorker": lambda c: c.create_worker(request_id="k"),
    "SendInput": lambda c: c.send_input(WID, "hi", request_id="k"),
}
UNSAFE: dict[str, Callable[[RuntimeClient], Awaitable[Any]]] = {
    "CreateWorker": lambda c: c.create_worker(),
    "SendInput": lambda c: c.send_input(WID, "hi"),
}


@pytest.mark.parametrize("rpc", list(SAFE))
async def test_safe_calls_are_retried_within_the_policy(
    counted: Callable[..., tuple[RuntimeClient, Counting]], rpc: str
) -> None:
    client, counter = counted(f"127.0.0.1:{unassigned_port()}")
    with pytest.raises(Unavailable):
        await SAFE[rpc](client)
    assert counter.attempts[rpc] == QUICK.max_attempts


@pytest.mark.parametrize("rpc", list(UNSAFE))
async def test_calls_without_a_request_id_are_sent_once(
    counted: Callable[..., tuple[RuntimeClient, Counting]], rpc: str
) -> None:
    client, counter = counted(f"127.0.0.1:{unassigned_port()}")
    with pytest.raises(Unavailable):
        await UNSAFE[rpc](client)
    assert counter.attempts[rpc] == 1


async def test_no_retry_and_the_budget_bound_the_attempts(
    counted: Callable[..., tuple[RuntimeClient, Counting]],
) -> None:
    target = f"127.0.0.1:{unassigned_port()}"
    client, counter = counted(target, NO_RETRY)
    with pytest.raises(Unavailable):
        await client.get_runtime()
    assert counter.attempts["GetRuntime"] == 1
    budget = RetryPolicy(max_attempts=10_000, budget_s=0.5, initial_backoff_s=0.05, jitter=0.0)
    client, counter = counted(target, budget)
    start = time.monotonic()
    with pytest.raises(Unavailable):
        await client.get_runtime()
    assert 1 < counter.attempts["GetRuntime"] < 10_000
    assert time.monotonic() - start < BOUND  # bounded by the budget, not by max_attempts


async def test_draining_is_retried_only_for_calls_safe_to_repeat(
    serve: ServeFactory, counted: Callable[..., tuple[RuntimeClient, Counting]]
) -> None:
    served = await serve()
    worker = (await served.client.create_worker(profile="very-slow")).worker.worker_id
    # keeps it draining (30 s on very-slow; cancelled once the checks are done)
    accepted = await served.client.send_input(worker, " ".join(["word"] * 60))
    closing = asyncio.create_task(served.runtime.close(grace_s=BOUND))
    try:
        await eventually(lambda: served.runtime.state is RuntimeState.DRAINING, what="draining")
        client, counter = counted(served.target)
        with pytest.raises(RuntimeDraining):
            await client.create_worker()
        assert counter.attempts["CreateWorker"] == 1
        with pytest.raises(RuntimeDraining):
            await client.create_worker(request_id="k")
        assert counter.attempts["CreateWorker"] == 1 + QUICK.max_attempts
        # reads are answered while draining, without retries
        await client.get_worker(worker)
        assert counter.attempts["GetWorker"] == 1
    finally:
        await served.runtime.cancel_run(accepted.run.run_id)  # (allowed while draining)
        await closing  # the run ended, then the runtime stops
