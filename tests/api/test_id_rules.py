"""Issue 7 items 7 and 8: one rule for ids, the same answer from every RPC.

- Spelling: worker and run ids are accepted only in canonical UUID form (lower-case, hyphenated).
  Upper case, ``{...}``, ``urn:uuid:`` and bare hex — which used to work for some RPCs and
  silently match nothing in others — are INVALID_ARGUMENT naming the field, everywhere.
- Length: a 6,000- or 10,000-character id is INVALID_ARGUMENT (checked before any lookup), not an
  echo so long that the client sees RESOURCE_EXHAUSTED instead of the error.
- Echoes: whatever an error carries is clipped at the gRPC edge, so no error outgrows the
  metadata limit (a long profile name, a long request_id).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from runtime_client import (
    IdempotencyConflict,
    InvalidArgument,
    ProfileNotFound,
    RunState,
    RuntimeClient,
    StatusCode,
)
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import Served, ServeFactory

BOUND = 30.0


async def first_event(client: RuntimeClient, worker_id: str, *, batched: bool) -> None:
    stream = client.subscribe(worker_id, resume=False, batched=batched)
    async with contextlib.aclosing(stream):
        async for _ in stream:
            return


WorkerCall = Callable[[RuntimeClient, str], Awaitable[Any]]
WORKER_CALLS: dict[str, WorkerCall] = {
    "CreateWorker": lambda c, w: c.create_worker(worker_id=w),
    "GetWorker": lambda c, w: c.get_worker(w),
    "SendInput": lambda c, w: c.send_input(w, "hello"),
    "StopWorker": lambda c, w: c.stop_worker(w),
    "DeleteWorker": lambda c, w: c.delete_worker(w),
    "GetTranscript": lambda c, w: c.get_transcript(w),
    "GetUsage": lambda c, w: c.get_usage(w),
    "ListEvents": lambda c, w: c.list_events(worker_id=w),
    "SubscribeEvents": lambda c, w: first_event(c, w, batched=False),
    "SubscribeEventBatches": lambda c, w: first_event(c, w, batched=True),
}
RUN_CALLS: dict[str, WorkerCall] = {
    "GetRun": lambda c, r: c.get_run(r),
    "CancelRun": lambda c, r: c.cancel_run(r),
}


def spellings(value: str) -> dict[str, str]:
    u = uuid.UUID(value)
    return {
        "upper": value.upper(),
        "braces": "{" + value + "}",
        "urn": u.urn,
        "bare-hex": u.hex,
        "6000 chars": value + "x" * (6000 - len(value)),
        "10000 chars": "f" * 10_000,
    }


@pytest.fixture
async def served_worker(serve: ServeFactory) -> tuple[Served, str, str]:
    served = await serve()
    client = served.client
    worker = (await client.create_worker()).worker.worker_id
    run = (await client.send_input(worker, "two words")).run.run_id
    assert (await client.wait_run(run, timeout=BOUND)).state is RunState.COMPLETED
    return served, worker, run


@pytest.mark.parametrize("spelling", list(spellings(str(uuid.uuid4()))))
@pytest.mark.parametrize("rpc", list(WORKER_CALLS))
async def test_every_worker_rpc_refuses_other_spellings_and_long_ids(
    served_worker: tuple[Served, str, str], rpc: str, spelling: str
) -> None:
    served, worker, _ = served_worker
    client = served.client
    bad = spellings(worker)[spelling]
    with pytest.raises(InvalidArgument) as info:
        await WORKER_CALLS[rpc](client, bad)
    assert info.value.code is StatusCode.INVALID_ARGUMENT
    assert info.value.field == "worker_id"
    assert bad not in info.value.message  # a refused id is not echoed
    # nothing happened to the worker the spelling stands for
    w = await client.get_worker(worker)
    assert w.worker_id == worker
    assert (await client.list_workers()).total_size == 1
    assert (await client.get_usage(worker)).runs == 1


@pytest.mark.parametrize("spelling", list(spellings(str(uuid.uuid4()))))
@pytest.mark.parametrize("rpc", list(RUN_CALLS))
async def test_every_run_rpc_refuses_other_spellings_and_long_ids(
    served_worker: tuple[Served, str, str], rpc: str, spelling: str
) -> None:
    served, _, run = served_worker
    bad = spellings(run)[spelling]
    with pytest.raises(InvalidArgument) as info:
        await RUN_CALLS[rpc](served.client, bad)
    assert info.value.field == "run_id"
    assert (await served.client.get_run(run)).state is RunState.COMPLETED


async def test_the_canonical_spelling_works_everywhere(
    served_worker: tuple[Served, str, str],
) -> None:
    served, worker, run = served_worker
    client = served.client
    for rpc in ("GetWorker", "GetTranscript", "GetUsage", "ListEvents"):
        await WORKER_CALLS[rpc](client, worker)
    assert (await client.list_events(worker_id=worker)).events
    await first_event(client, worker, batched=True)
    await first_event(client, worker, batched=False)
    for call in RUN_CALLS.values():
        await call(client, run)
    chosen = str(uuid.uuid4())
    assert (await client.create_worker(worker_id=chosen)).worker.worker_id == chosen


async def test_echoed_values_are_clipped(serve: ServeFactory) -> None:
    # generous request limits, so that long values reach the errors that echo them
    served = await serve(limits=Limits(max_id_chars=20_000, max_request_id_chars=20_000))
    client = served.client
    name = "p" * 10_000
    with pytest.raises(ProfileNotFound) as info:
        await client.create_worker(profile=name)
    assert len(info.value.message) <= 256
    assert info.value.metadata["profile"] == "p" * 127 + "\u2026"

    worker = (await client.create_worker()).worker.worker_id
    key = "\N{GRINNING FACE}" * 10_000  # 40 kB of metadata if echoed whole
    await client.send_input(worker, "one", request_id=key)
    with pytest.raises(IdempotencyConflict) as conflict:
        await client.send_input(worker, "two", request_id=key)
    assert conflict.value.metadata["request_id"].endswith("\u2026")
    assert len(conflict.value.metadata["request_id"]) == 128
