"""EmbeddedRuntime answers exactly as RuntimeClient does against a served Runtime: one Runtime is
served by a real grpc.aio server on 127.0.0.1 port 0 and, at the same time, wrapped in-process;
every scenario runs through both handles and the results must compare equal — the client's model
classes, field for field (``Event.raw`` aside), and for errors the same class, reason, status
code, message and metadata. Every server error class is walked through both, as test_errors walks
them through the server alone."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

import runtime_client as rc
import runtime_client.errors as client_errors
from runtime_server import errors as server_errors
from runtime_server.embedded import EmbeddedRuntime
from runtime_server.model import Limits
from runtime_server.runtime import HostPolicy

if TYPE_CHECKING:
    from serving import Served, ServeFactory

BOUND = 30.0  # a safety net, never a speed assertion
Call = Callable[[Any], Awaitable[Any]]


@pytest.fixture
async def both(
    serve: ServeFactory, tmp_path: Path
) -> AsyncIterator[tuple[Served, EmbeddedRuntime]]:
    policy = HostPolicy(allowed_roots=(str(tmp_path),), allowed_capabilities=("fs.read", "clock"))
    served = await serve(policy=policy)
    handle = EmbeddedRuntime(served.runtime)
    yield served, handle
    await handle.close()
    assert served.runtime.state.name == "SERVING"  # the handle does not own it


async def outcome(call: Call, handle: Any) -> Any:
    """What ``call(handle)`` returns, or the error it raises as comparable data."""
    try:
        return ("ok", await call(handle))
    except client_errors.RuntimeServiceError as exc:
        return ("error", type(exc), exc.reason, exc.code, exc.message, dict(exc.metadata))


async def same(served: Served, embedded: EmbeddedRuntime, call: Call) -> Any:
    remote = await outcome(call, served.client)
    local = await outcome(call, embedded)
    assert local == remote
    return remote


async def settled(served: Served) -> None:
    """No run active or queued (so two reads in a row see the same state)."""
    for _ in range(int(BOUND / 0.01)):
        info = served.runtime.info()
        if info.active_runs == 0 and info.queued_runs == 0:
            await served.runtime.list_events()  # everything committed is readable
            return
        await asyncio.sleep(0.01)
    raise AssertionError("runs did not settle")


async def build_state(served: Served, tmp_path: Path) -> dict[str, str]:
    """Workers in every state, with a workspace, labels, a bundle ref, runs finished, cancelled
    and failed, a stopped worker, a deleted one, and diagnostics: every payload kind is logged."""
    c = served.client
    (tmp_path / "ws").mkdir()
    echo = b'[profiles.echo]\nprovider = "builtin"\nmodel = "echo"\n'
    bundle = (await c.put_bundle("bundle", echo)).bundle
    first = await c.create_worker(
        profile="echo",
        display_name="one",
        labels={"team": "a"},
        workspace=rc.Workspace(
            root=str(tmp_path / "ws"),
            root_mode=rc.MountMode.READ_WRITE,
            mounts=(rc.Mount(path=str(tmp_path)),),
        ),
        config_bundle=rc.ConfigBundleRef(id="bundle", digest=bundle.digest),
        initial_input="hello there",
    )
    w1 = first.worker
    assert first.initial_run is not None
    await c.wait_run(first.initial_run.run_id, timeout=BOUND)
    done = await c.send_input(w1.worker_id, "one two three")
    await c.wait_run(done.run.run_id, timeout=BOUND)
    slow = (await c.create_worker(profile="very-slow", labels={"team": "b"})).worker
    long = await c.send_input(slow.worker_id, " ".join(["word"] * 60))  # cancelled below
    queued = await c.send_input(slow.worker_id, "later", busy_policy=rc.BusyPolicy.ENQUEUE)
    await c.cancel_run(queued.run.run_id)
    await c.cancel_run(long.run.run_id)
    await c.stop_worker(slow.worker_id, reason="enough")
    gone = (await c.create_worker()).worker
    await c.delete_worker(gone.worker_id)
    await settled(served)
    return {"w1": w1.worker_id, "slow": slow.worker_id, "gone": gone.worker_id,
            "run": done.run.run_id, "cancelled": long.run.run_id}  # fmt: skip


async def test_every_read_answers_the_same(
    both: tuple[Served, EmbeddedRuntime], tmp_path: Path
) -> None:
    served, embedded = both
    ids = await build_state(served, tmp_path)
    reads: list[Call] = [
        lambda h: h.get_runtime(),
        lambda h: h.list_profiles(),
        lambda h: h.list_diagnostics(),
        lambda h: h.list_diagnostics(page_size=1),
        lambda h: h.list_workspace_claims(),
        lambda h: h.list_workspace_claims(worker_id=ids["w1"]),
        lambda h: h.get_worker(ids["w1"]),
        lambda h: h.get_worker(ids["slow"]),
        lambda h: h.list_workers(),
        lambda h: h.list_workers(page_size=1),
        lambda h: h.list_workers(state=rc.WorkerState.STOPPED),
        lambda h: h.list_workers(state=rc.WorkerState.UNSPECIFIED, labels={"team": "a"}),
        lambda h: h.get_run(ids["run"]),
        lambda h: h.get_run(ids["cancelled"]),
        lambda h: h.wait_run(ids["run"], timeout=BOUND),
        lambda h: h.get_transcript(ids["w1"]),
        lambda h: h.get_transcript(ids["w1"], page_size=1),
        lambda h: h.list_events(),
        lambda h: h.list_events(after_seq=3, worker_id=ids["w1"], page_size=4),
        lambda h: h.list_events(worker_id=ids["gone"]),
        lambda h: h.get_usage(),
        lambda h: h.get_usage(ids["w1"]),
        lambda h: _collect(h.iter_workers(page_size=1)),
        lambda h: _collect(h.iter_transcript(ids["w1"], page_size=1)),
    ]
    for read in reads:
        result = await same(served, embedded, read)
        assert result[0] == "ok", result
    # the state really has every payload kind the server logs
    kinds = {e.kind for e in (await served.client.list_events(page_size=1000)).events}
    assert kinds >= {
        "worker_created", "worker_state_changed", "run_queued", "run_started", "input_committed",
        "text_delta", "message_committed", "usage_reported", "run_finished", "worker_stopped",
        "worker_deleted",
    }  # fmt: skip
    # and a page of the log converts every event equal, payloads included (raw aside)
    remote = (await served.client.list_events(page_size=1000)).events
    local = (await embedded.list_events(page_size=1000)).events
    assert local == remote
    assert len(local) > 20
    assert all(e.raw is None for e in local)
    assert all(e.raw is not None for e in remote)


async def _collect(items: AsyncIterator[Any]) -> list[Any]:
    return [x async for x in items]


async def test_every_change_answers_the_same(
    both: tuple[Served, EmbeddedRuntime], tmp_path: Path
) -> None:
    """A change is made once through each handle; each answer equals what the other handle reads
    back (the committed event or the stored record)."""
    served, embedded = both
    for maker, reader in ((embedded, served.client), (served.client, embedded)):
        created = await maker.create_worker(labels={"via": type(maker).__name__})
        assert await reader.get_worker(created.worker.worker_id) == created.worker
        wid = created.worker.worker_id
        accepted = await maker.send_input(wid, "four five")
        finished = await maker.wait_run(accepted.run.run_id, timeout=BOUND)
        # the run as accepted is as it was queued or, once started, as it started
        logged = (await reader.list_events(after_seq=accepted.seq - 1, worker_id=wid)).events
        assert logged[0].seq == accepted.seq
        assert logged[0].kind == "run_queued"
        assert accepted.run in [
            e.payload.run for e in logged if isinstance(e.payload, (rc.RunQueued, rc.RunStarted))
        ]
        assert await reader.get_run(accepted.run.run_id) == finished
        assert await reader.cancel_run(accepted.run.run_id) == finished  # idempotent
        stopped = await maker.stop_worker(wid, reason="bye")
        assert await reader.get_worker(wid) == stopped
        # declared to return None: checked at run time for both handles
        assert await maker.delete_worker(wid) is None  # type: ignore[func-returns-value]
        with pytest.raises(client_errors.WorkerNotFound):
            await reader.get_worker(wid)


async def test_every_refusal_answers_the_same(
    both: tuple[Served, EmbeddedRuntime], tmp_path: Path
) -> None:
    """Errors the Runtime raises by itself, from validation to state, through both handles."""
    served, embedded = both
    c = served.client
    busy = (await c.create_worker(profile="very-slow")).worker
    # busy for the whole list below, however loaded the machine (cancelled after it)
    active = await c.send_input(busy.worker_id, " ".join(["word"] * 60))
    stopped = (await c.create_worker()).worker
    await c.stop_worker(stopped.worker_id)
    await c.create_worker(request_id="key-1", display_name="first")
    unknown = str(uuid.uuid4())
    refusals: list[tuple[type[client_errors.RuntimeServiceError], Call]] = [
        (client_errors.WorkerNotFound, lambda h: h.get_worker(unknown)),
        (client_errors.RunNotFound, lambda h: h.get_run(unknown)),
        (client_errors.RunNotFound, lambda h: h.cancel_run(unknown)),
        (client_errors.RunNotFound, lambda h: h.wait_run(unknown, timeout=BOUND)),
        (client_errors.ProfileNotFound, lambda h: h.create_worker(profile="nope")),
        (client_errors.InvalidArgument, lambda h: h.get_worker("not an id")),
        (client_errors.InvalidArgument, lambda h: h.list_workers(page_size=-1)),
        (client_errors.InvalidArgument, lambda h: h.list_workers(page_token="garbage")),
        (client_errors.InvalidArgument, lambda h: h.send_input(busy.worker_id, "   ")),
        (client_errors.InvalidArgument, lambda h: h.create_worker(display_name="x" * 10_000)),
        (client_errors.InvalidArgument, lambda h: h.create_worker(labels={"": "v"})),
        (
            client_errors.InvalidArgument,
            lambda h: h.create_worker(workspace=rc.Workspace(root="")),
        ),
        (
            client_errors.WorkspaceNotAllowed,
            lambda h: h.create_worker(workspace=rc.Workspace(root="/etc")),
        ),
        (
            client_errors.InvalidArgument,
            lambda h: h.create_worker(capabilities=("launch.missiles",)),
        ),
        (client_errors.CapabilityNotAllowed, lambda h: h.create_worker(capabilities=("fs.write",))),
        (
            client_errors.IdempotencyConflict,
            lambda h: h.create_worker(request_id="key-1", display_name="second"),
        ),
        (client_errors.WorkerAlreadyExists, lambda h: h.create_worker(worker_id=busy.worker_id)),
        (client_errors.WorkerBusy, lambda h: h.send_input(busy.worker_id, "more")),
        (client_errors.WorkerStopped, lambda h: h.send_input(stopped.worker_id, "hello")),
        (client_errors.CursorAhead, lambda h: h.list_events(after_seq=10**6)),
        (client_errors.CursorAhead, lambda h: _first(h.subscribe(after_seq=10**9, resume=False))),
        (
            client_errors.InvalidArgument,
            lambda h: _first(h.subscribe(worker_id="bad id", resume=False)),
        ),
    ]
    for expected, call in refusals:
        result = await same(served, embedded, call)
        assert result[0] == "error", (expected, result)
        assert result[1] is expected, (expected, result)
    await c.cancel_run(active.run.run_id)
    # what the client refuses before sending, the handle refuses alike
    for h in (c, embedded):
        await _refused_before_sending(h, busy.worker_id)


async def _refused_before_sending(h: Any, worker_id: str) -> None:
    with pytest.raises(ValueError, match="SOMETIMES"):
        await h.send_input(worker_id, "x", busy_policy="SOMETIMES")
    with pytest.raises(ValueError, match="Value out of range"):
        await h.list_events(after_seq=-1)
    with pytest.raises(ValueError, match="Value out of range"):
        await h.list_workers(page_size=2**31)
    with pytest.raises(ValueError, match="Value out of range"):
        await _first(h.subscribe(after_seq=-1))
    slow = await h.send_input(worker_id, "p q r s t u v w")
    with pytest.raises(TimeoutError):
        await h.wait_run(slow.run.run_id, timeout=0.05)
    await h.cancel_run(slow.run.run_id)


async def _first(events: AsyncGenerator[rc.Event, None]) -> rc.Event:
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            return event
    raise AssertionError("the stream ended")


# --- every server error class, walked as test_errors walks them -----------------------------


ServerError = type[server_errors.RuntimeServiceError]


def _tree(cls: ServerError) -> list[ServerError]:
    out = [cls]
    for sub in cls.__subclasses__():
        out += _tree(sub)
    return out


def sample(cls: type[server_errors.RuntimeServiceError]) -> server_errors.RuntimeServiceError:
    """An instance of ``cls`` built from its signature (ints for int parameters)."""
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        is_int = param.annotation in ("int", int, "int | None")
        kwargs[name] = 7 if is_int else f"{name}-Ü-{cls.__name__}" + "x" * 300
    if cls.__init__ is server_errors.RuntimeServiceError.__init__:
        kwargs["detail"] = "y" * 300  # plain classes take free metadata; cut to the echo bound
    return cls(**kwargs)


ALL = _tree(server_errors.RuntimeServiceError)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
async def test_every_error_class_is_raised_alike(
    both: tuple[Served, EmbeddedRuntime],
    monkeypatch: pytest.MonkeyPatch,
    cls: type[server_errors.RuntimeServiceError],
) -> None:
    served, embedded = both
    exc = sample(cls)

    def raiser(worker_id: str) -> NoReturn:
        raise exc

    monkeypatch.setattr(served.runtime, "get_worker", raiser)
    result = await same(served, embedded, lambda h: h.get_worker(str(uuid.uuid4())))
    assert result[0] == "error"
    assert result[2] == cls.reason or "reason" not in vars(cls)
    with pytest.raises(client_errors.RuntimeServiceError) as info:
        await embedded.get_worker(str(uuid.uuid4()))
    assert info.value.__cause__ is exc  # the domain error stays reachable in-process


async def test_an_unexpected_exception_is_a_generic_internal_error_alike(
    both: tuple[Served, EmbeddedRuntime], monkeypatch: pytest.MonkeyPatch
) -> None:
    served, embedded = both

    def broken(worker_id: str) -> NoReturn:
        raise ZeroDivisionError("secret detail")

    monkeypatch.setattr(served.runtime, "get_worker", broken)
    result = await same(served, embedded, lambda h: h.get_worker(str(uuid.uuid4())))
    assert result[:3] == ("error", client_errors.InternalError, "INTERNAL")
    assert "secret" not in result[4]
    monkeypatch.undo()
    codes = [d.code for d in (await embedded.list_diagnostics(page_size=2)).items]
    assert codes == ["RPC_INTERNAL_ERROR", "RPC_INTERNAL_ERROR"]


# --- subscriptions ----------------------------------------------------------------------------


async def _until_finished(events: AsyncGenerator[rc.Event, None], run_id: str) -> list[rc.Event]:
    seen: list[rc.Event] = []
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            seen.append(event)
            if isinstance(event.payload, rc.RunFinished) and event.payload.run.run_id == run_id:
                return seen
    raise AssertionError("the stream ended early")


async def test_subscriptions_deliver_the_same_events(
    both: tuple[Served, EmbeddedRuntime],
) -> None:
    served, embedded = both
    c = served.client
    worker = (await c.create_worker(profile="slow")).worker
    start = (await c.get_runtime()).last_seq
    accepted = await c.send_input(worker.worker_id, "alpha beta gamma delta")
    run_id = accepted.run.run_id
    streams = await asyncio.gather(
        _until_finished(c.subscribe(after_seq=0), run_id),
        _until_finished(embedded.subscribe(after_seq=0), run_id),
        _until_finished(c.subscribe(worker.worker_id, after_seq=start, batched=False), run_id),
        _until_finished(embedded.subscribe(worker.worker_id, after_seq=start), run_id),
    )
    assert streams[1] == streams[0]
    assert streams[3] == streams[2]
    assert [e.kind for e in streams[3]].count("text_delta") == 4
    # a worker-filtered stream ends after the worker's WorkerDeleted, on both
    ends = [h.subscribe(worker.worker_id, after_seq=start) for h in (c, embedded)]
    await c.delete_worker(worker.worker_id)
    tails = [[e async for e in s] for s in ends]
    assert tails[0] == tails[1]
    assert tails[0][-1].kind == "worker_deleted"


async def test_heartbeats_and_from_now_alike(serve: ServeFactory) -> None:
    served = await serve(limits=Limits(heartbeat_interval_seconds=0.05))
    embedded = EmbeddedRuntime(served.runtime)

    async def beat(h: Any) -> rc.Event:
        return await _first(h.subscribe(from_now=True, include_heartbeats=True))

    remote, local = await beat(served.client), await beat(embedded)
    assert remote.kind == local.kind == "heartbeat"
    assert (remote.seq, remote.worker_id, remote.payload) == (
        local.seq,
        local.worker_id,
        local.payload,
    )


async def test_shutdown_ends_both_streams_with_runtime_draining(serve: ServeFactory) -> None:
    served = await serve()
    embedded = EmbeddedRuntime(served.runtime)
    await served.client.create_worker()
    ends: list[Any] = []

    async def follow(h: Any) -> None:
        try:
            async for _ in h.subscribe(resume=False):
                pass
        except client_errors.RuntimeServiceError as exc:
            ends.append((type(exc), exc.reason, exc.code, exc.message, dict(exc.metadata)))

    tasks = [asyncio.ensure_future(follow(h)) for h in (served.client, embedded)]
    for _ in range(int(BOUND / 0.01)):
        if served.runtime.info().subscribers == 2:
            break
        await asyncio.sleep(0.01)
    await served.runtime.close()
    await asyncio.wait_for(asyncio.gather(*tasks), BOUND)
    assert len(ends) == 2
    assert ends[0] == ends[1]
    assert ends[0][0] is client_errors.RuntimeDraining
    assert ends[0][4] == {"last_seq": str(served.runtime.info().last_seq)}
    # with resume, an in-process stream does not wait for a Runtime that cannot come back
    with pytest.raises(client_errors.RuntimeDraining):
        await asyncio.wait_for(_first(embedded.subscribe()), BOUND)


async def test_open_owns_the_runtime_and_close_closes_it() -> None:
    handle = await EmbeddedRuntime.open(store=None)
    async with handle:
        created = await handle.create_worker(initial_input="hi")
        assert isinstance(created, rc.Created)
        assert created.initial_run is not None
        run = await handle.wait_run(created.initial_run.run_id, timeout=BOUND)
        assert run.state is rc.RunState.COMPLETED
    assert handle.runtime.state.name == "STOPPED"
    await handle.close()  # twice is fine


async def test_a_lagging_embedded_subscription_resumes_without_gaps() -> None:
    """Cut for lagging (a buffer of 8 events, a consumer that pauses while a run streams 30
    words), the handle resubscribes from the last seq it yielded, as the client does: every event
    arrives once, in order; with ``resume=False`` the cut is raised as SubscriberLagging."""
    handle = await EmbeddedRuntime.open(limits=Limits(subscriber_buffer_events=8))
    async with handle:
        worker = (await handle.create_worker()).worker
        retries: list[str] = []
        events = handle.subscribe(worker.worker_id, on_retry=lambda e, d: retries.append(e.reason))
        strict = handle.subscribe(worker.worker_id, resume=False)
        first = await anext(events)  # subscribed (WorkerCreated); now stop reading a while
        assert await anext(strict) == first
        accepted = await handle.send_input(worker.worker_id, " ".join(["word"] * 30))
        await handle.wait_run(accepted.run.run_id, timeout=BOUND)
        seen = [first, *await _until_finished(events, accepted.run.run_id)]
        logged = (await handle.list_events(worker_id=worker.worker_id, page_size=1000)).events
        assert seen == list(logged[: len(seen)])  # up to the run's RunFinished, nothing missed
        assert len(seen) > 30
        assert handle.runtime.counters().subscriber_cuts["lagging"] >= 1
        assert retries == []  # the first cut after progress resumes at once, without a wait
        got = [first]
        with pytest.raises(client_errors.SubscriberLagging) as info:
            await _collect_into(strict, got)  # what it holds, then the cut
        assert got == seen[: len(got)]
        assert info.value.last_seq == got[-1].seq


async def _collect_into(events: AsyncIterator[rc.Event], into: list[rc.Event]) -> None:
    async for event in events:
        into.append(event)
