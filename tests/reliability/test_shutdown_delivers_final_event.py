"""Shutdown delivers the final event (issue 8, item 1).

The required order on SIGTERM: active runs are interrupted → their ``RunFinished(INTERRUPTED)``
is committed AND delivered to every live subscription → each stream ends with UNAVAILABLE /
RUNTIME_DRAINING carrying ``last_seq`` → the store closes, and nothing touches it afterwards.
Checked in-process (the Runtime and its subscriptions over a real SQLite file) and against a real
``serve`` process with four subscriber kinds at once: the raw per-event stub, the raw batched
stub, the typed client and the CLI's ``events --follow``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
from pathlib import Path

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2, status_pb2
from serving import (
    PYTHON,
    REPO_ROOT,
    ServeProcessFactory,
    env,
    eventually,
    unassigned_port,
    write_config,
)

from runtime_client import RunFinished as ClientRunFinished
from runtime_client import RunState as ClientRunState
from runtime_client import RuntimeDraining as ClientRuntimeDraining
from runtime_client import TextDelta as ClientTextDelta
from runtime_client import Unavailable as ClientUnavailable
from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc
from runtime_client.api import types_pb2 as pb
from runtime_server import errors
from runtime_server.model import Event, RunFinished, RunState
from runtime_server.runtime import Runtime, Subscription, parse_config
from runtime_server.store import SqliteStore

BOUND = 60.0  # a safety net on a loaded machine, not a speed assertion
SLOW = parse_config({"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 50}}}})
WORDS = " ".join(f"w{i}" for i in range(2000))  # far longer than the test lives


async def test_runtime_close_hands_run_finished_to_subscribers_before_they_end(
    tmp_path: Path,
) -> None:
    rt = Runtime(store=SqliteStore(tmp_path / "rt.sqlite3"), config=SLOW)
    await rt.start()
    worker = (await rt.create_worker(profile="slow")).worker
    accepted = await rt.send_input(worker.worker_id, WORDS)
    # one subscription live at the tail, one still replaying from the start of the log
    live = rt.subscribe(worker_id=worker.worker_id, after_seq=accepted.seq)
    replaying = rt.subscribe(after_seq=0)
    seen: dict[str, list[Event]] = {"live": [], "replaying": []}

    async def consume(name: str, sub: Subscription) -> None:
        async for event in sub:
            seen[name].append(event)

    consumers = [
        asyncio.ensure_future(consume(n, s)) for n, s in (("live", live), ("replaying", replaying))
    ]
    await eventually(lambda: len(seen["live"]) > 3, what="the run streams")
    async with asyncio.timeout(BOUND):
        await rt.close(0.0)
        await asyncio.gather(*consumers)
    for name, events in seen.items():
        finished = [e.payload for e in events if isinstance(e.payload, RunFinished)]
        assert [f.run.state for f in finished] == [RunState.INTERRUPTED], name
    # after close: neither a new subscription nor a read reaches the closed store

    async def subscribe_after_close() -> None:
        async for _ in rt.subscribe(after_seq=0):  # refused when called or when iterated
            pass

    with pytest.raises(errors.RuntimeDraining):
        await subscribe_after_close()
    with pytest.raises(errors.RuntimeDraining):
        await rt.list_events(after_seq=0)


def _error_info(exc: grpc.aio.AioRpcError) -> error_details_pb2.ErrorInfo:
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return info
    raise AssertionError(f"no ErrorInfo in {exc!r}")


async def _raw(
    stream: grpc.aio.UnaryStreamCall, batched: bool
) -> tuple[list[str], list[int], grpc.aio.AioRpcError | None]:
    """Read a raw stream to its end: (payload kinds, seqs, the final error or None for OK)."""
    kinds: list[str] = []
    seqs: list[int] = []
    try:
        async for msg in stream:
            for ev in msg.events if batched else (msg,):
                if ev.seq:
                    kind = ev.WhichOneof("payload")
                    if kind == "run_finished":
                        kind += ":" + pb.RunState.Name(ev.run_finished.run.state)
                    kinds.append(kind)
                    seqs.append(ev.seq)
    except grpc.aio.AioRpcError as exc:
        return kinds, seqs, exc
    return kinds, seqs, None


async def test_sigterm_delivers_run_finished_to_every_kind_of_subscriber(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "slow.toml", delay_ms=50)
    sp = await serve_process(tmp_path / "data", config=config, extra=["--grace", "0.2"])
    client = sp.client()
    worker_id = (await client.create_worker(profile="slow")).worker.worker_id
    accepted = await client.send_input(worker_id, WORDS)
    run_id = accepted.run.run_id

    channel = grpc.aio.insecure_channel(sp.target)
    stub = ogrpc.ObservationServiceStub(channel)
    request = opb.SubscribeEventsRequest(worker_id=worker_id, after_seq=accepted.seq)
    per_event = asyncio.ensure_future(_raw(stub.SubscribeEvents(request), batched=False))
    batched = asyncio.ensure_future(_raw(stub.SubscribeEventBatches(request), batched=True))

    typed_events: list[object] = []
    typed_events_seq: list[int] = []
    typed_error: list[BaseException] = []

    async def typed() -> None:
        stream = client.subscribe(worker_id, after_seq=accepted.seq, resume=False)
        try:
            async with contextlib.aclosing(stream):
                async for ev in stream:
                    typed_events.append(ev.payload)
                    typed_events_seq.append(ev.seq)
        except ClientRuntimeDraining as exc:
            typed_error.append(exc)

    typed_task = asyncio.ensure_future(typed())
    follow_out, follow_err = tmp_path / "follow.out", tmp_path / "follow.err"
    with follow_out.open("wb") as out, follow_err.open("wb") as err:
        follow = subprocess.Popen(  # noqa: ASYNC220 - only forks; polled below
            [str(PYTHON), "-m", "runtime_server.cli", "--target", sp.target, "--json",
             "events", "--follow", "--worker", worker_id, "--after", str(accepted.seq)],
            stdout=out, stderr=err, cwd=REPO_ROOT, env=env(),
        )  # fmt: skip
    try:
        # every subscriber is receiving the run's text before the server is told to stop
        await eventually(
            lambda: (
                any(isinstance(p, ClientTextDelta) for p in typed_events)
                and follow_out.read_text().count('"text_delta"') > 0
            ),
            within=BOUND,
            what="all subscribers streaming",
        )
        assert sp.terminate(timeout=BOUND) == 0

        for task, name in ((per_event, "per-event"), (batched, "batched")):
            kinds, seqs, error = await asyncio.wait_for(task, BOUND)
            finished = [k for k in kinds if k.startswith("run_finished")]
            assert finished == ["run_finished:RUN_STATE_INTERRUPTED"], (name, kinds[-5:])
            assert error is not None, f"{name}: the stream ended OK at shutdown"
            assert error.code() is grpc.StatusCode.UNAVAILABLE, (name, error)
            info = _error_info(error)
            assert info.reason == "RUNTIME_DRAINING", name
            assert int(info.metadata["last_seq"]) == seqs[-1], name

        await asyncio.wait_for(typed_task, BOUND)
        finished_runs = [p.run for p in typed_events if isinstance(p, ClientRunFinished)]
        assert [(r.run_id, r.state) for r in finished_runs] == [
            (run_id, ClientRunState.INTERRUPTED)
        ]
        assert len(typed_error) == 1
        assert isinstance(typed_error[0], ClientRuntimeDraining)
        assert typed_error[0].last_seq >= typed_events_seq[-1]

        def cli_saw_it() -> bool:
            lines = [json.loads(x) for x in follow_out.read_text().splitlines() if x.strip()]
            return any(
                e["kind"] == "run_finished" and e["payload"]["run"]["state"] == "INTERRUPTED"
                for e in lines
            )

        await eventually(cli_saw_it, within=BOUND, what="the CLI printed RunFinished(INTERRUPTED)")
        await eventually(
            lambda: "waiting for server" in follow_err.read_text(),
            within=BOUND,
            what="the CLI says it waits for the server",
        )
        assert "INTERNAL" not in follow_err.read_text()
    finally:
        follow.kill()
        follow.wait(timeout=BOUND)
        await channel.close()
    server_err = sp.stderr()
    assert "closed" not in server_err, server_err
    assert "Traceback" not in server_err, server_err


async def test_typed_client_and_cli_follow_resume_when_the_runtime_is_back(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    """After RUNTIME_DRAINING the typed client (resume on) and ``events --follow`` keep trying
    with backoff; when the runtime is back on the same address they go on after the last seq
    they delivered: nothing skipped, nothing repeated."""
    config = write_config(tmp_path / "slow.toml", delay_ms=50)
    data = tmp_path / "data"
    # back on the same address: a port the kernel never hands out by itself (see its docstring)
    listen = ["--listen", f"127.0.0.1:{unassigned_port()}"]
    first = await serve_process(data, config=config, extra=["--grace", "0.2", *listen])
    client = first.client()
    worker_id = (await client.create_worker(profile="slow")).worker.worker_id
    accepted = await client.send_input(worker_id, WORDS)
    seen: list[int] = []
    finished: list[ClientRunState] = []
    retries: list[str] = []

    async def follow() -> None:
        stream = client.subscribe(
            worker_id,
            after_seq=0,
            max_reconnects=None,
            on_retry=lambda error, _delay: retries.append(error.reason),
        )
        async with contextlib.aclosing(stream):
            async for ev in stream:
                seen.append(ev.seq)
                if isinstance(ev.payload, ClientRunFinished):
                    finished.append(ev.payload.run.state)
                    if len(finished) == 2:
                        return

    task = asyncio.ensure_future(follow())
    out_path, err_path = tmp_path / "cli.out", tmp_path / "cli.err"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        cli = subprocess.Popen(  # noqa: ASYNC220 - only forks; polled below
            [str(PYTHON), "-m", "runtime_server.cli", "--target", first.target, "--json",
             "events", "--follow", "--worker", worker_id, "--after", "0"],
            stdout=out, stderr=err, cwd=REPO_ROOT, env=env(),
        )  # fmt: skip
    try:
        await eventually(lambda: len(seen) > accepted.seq + 3, within=BOUND, what="streaming")
        assert first.terminate(timeout=BOUND) == 0
        await eventually(lambda: finished == [ClientRunState.INTERRUPTED], within=BOUND)
        await eventually(lambda: "RUNTIME_DRAINING" in retries or "UNAVAILABLE" in retries)
        await eventually(lambda: "waiting for server" in err_path.read_text(), within=BOUND)

        second = await serve_process(data, config=config, extra=[*listen, "--grace", "0.2"])
        again = second.client()
        runs: list[str] = []

        async def sent() -> bool:
            # the channels share grpc's subchannel to this address, which may still be backing
            # off from the outage: a call can fail fast with UNAVAILABLE for a moment
            with contextlib.suppress(ClientUnavailable):
                runs.append((await again.send_input(worker_id, "back again")).run.run_id)
            return bool(runs)

        await eventually(sent, within=BOUND, interval=0.2, what="the new server answers")
        run_id = runs[0]
        await asyncio.wait_for(task, BOUND)
        assert finished == [ClientRunState.INTERRUPTED, ClientRunState.COMPLETED]
        assert seen == sorted(set(seen)), "no event twice, in order"
        logged = [e.seq for e in (await again.list_events(worker_id=worker_id)).events]
        assert seen == logged[: len(seen)], "nothing skipped across the restart"

        def cli_caught_up() -> bool:
            lines = [json.loads(x) for x in out_path.read_text().splitlines() if x.strip()]
            return any(e["run_id"] == run_id and e["kind"] == "run_finished" for e in lines)

        await eventually(cli_caught_up, within=BOUND, what="the CLI followed into the new run")
        assert "server is back; resuming" in err_path.read_text()
        cli_seqs = [json.loads(x)["seq"] for x in out_path.read_text().splitlines() if x.strip()]
        assert cli_seqs == logged[: len(cli_seqs)]
    finally:
        task.cancel()
        cli.kill()
        cli.wait(timeout=BOUND)


async def test_a_subscription_ended_during_its_replay_read_never_joins_the_fan_out(
    tmp_path: Path,
) -> None:
    rt = Runtime(store=SqliteStore(tmp_path / "rt.sqlite3"), config=SLOW)
    await rt.start()
    try:
        await rt.create_worker()  # something to replay
        sub = rt.subscribe(after_seq=0)
        reading = asyncio.ensure_future(sub.next())
        await asyncio.sleep(0)  # the replay read is now running in the store's thread
        sub.close()
        await asyncio.wait_for(reading, BOUND)
        assert rt.info().subscribers == 0  # not left behind in the live fan-out
    finally:
        await rt.close()
