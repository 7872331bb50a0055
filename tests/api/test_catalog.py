"""CatalogService through the real server with the real client: creating, getting, listing
(paging, label and state filters), stopping and deleting workers."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from serving import eventually

from runtime_client import (
    ConfigBundleRef,
    InvalidArgument,
    Mount,
    MountMode,
    RunFinished,
    RunNotFound,
    RunState,
    RuntimeClient,
    StatusCode,
    WorkerAlreadyExists,
    WorkerCreated,
    WorkerDeleted,
    WorkerNotFound,
    WorkerState,
    WorkerStopped,
    WorkerStoppedError,
    Workspace,
)
from runtime_server.runtime import HostPolicy

if TYPE_CHECKING:
    from serving import ServeFactory


LONG = " ".join(f"w{i}" for i in range(200))  # on "very-slow" this runs for minutes: cancel it


# --- CatalogService: create / get -----------------------------------------------------------

# A config bundle with a profile named like the host's slow echo (a bundle's profile wins).
BUNDLE = b'[profiles.slow]\nprovider = "builtin"\nmodel = "echo"\n'


async def test_create_worker_round_trips_every_field(serve: ServeFactory, tmp_path: Path) -> None:
    # the host allows workspaces below tmp_path and /usr (none by default)
    (tmp_path / "data").mkdir()
    policy = HostPolicy(allowed_roots=(str(tmp_path), "/usr"))
    client = (await serve(policy=policy)).client
    worker_id = str(uuid.uuid4())
    bundle = (await client.put_bundle("bundle-1", BUNDLE)).bundle
    workspace = Workspace(
        str(tmp_path), (Mount(str(tmp_path / "data"), MountMode.READ_WRITE), Mount("/usr"))
    )
    created = await client.create_worker(
        worker_id=worker_id,
        profile="slow",
        display_name="Ada",
        labels={"team": "core", "env": "test"},
        workspace=workspace,
        config_bundle=ConfigBundleRef("bundle-1", bundle.digest),
    )
    w = created.worker

    assert w.worker_id == worker_id
    assert w.state is WorkerState.IDLE
    assert w.profile == "slow"
    assert w.display_name == "Ada"
    assert dict(w.labels) == {"team": "core", "env": "test"}
    assert w.workspace == Workspace(
        str(tmp_path),
        (Mount(str(tmp_path / "data"), MountMode.READ_WRITE), Mount("/usr", MountMode.READ_ONLY)),
    )
    assert w.config_bundle == ConfigBundleRef("bundle-1", bundle.digest)
    assert w.active_run_id == ""
    assert w.created_at > 0
    assert created.initial_run is None
    assert await client.get_worker(worker_id) == w
    # the seq in the answer is the seq of the WorkerCreated event
    page = await client.list_events(after_seq=created.seq - 1, page_size=1)
    assert page.events[0].seq == created.seq
    assert isinstance(page.events[0].payload, WorkerCreated)
    assert page.events[0].payload.worker.worker_id == worker_id


async def test_create_worker_mints_a_uuid_and_defaults_to_echo(client: RuntimeClient) -> None:
    w = (await client.create_worker()).worker
    assert str(uuid.UUID(w.worker_id)) == w.worker_id
    assert uuid.UUID(w.worker_id).version == 7
    assert w.profile == "echo"


async def test_create_worker_with_initial_input_starts_a_run(client: RuntimeClient) -> None:
    created = await client.create_worker(initial_input="hello there")
    assert created.initial_run is not None
    assert created.initial_run.worker_id == created.worker.worker_id
    done = await client.wait_run(created.initial_run.run_id, timeout=30)
    assert done.state is RunState.COMPLETED
    transcript = await client.get_transcript(created.worker.worker_id)
    assert [e.message.text for e in transcript.items] == ["hello there", "hello there"]


async def test_create_worker_with_an_existing_id_is_already_exists(client: RuntimeClient) -> None:
    worker_id = str(uuid.uuid4())
    await client.create_worker(worker_id=worker_id)
    with pytest.raises(WorkerAlreadyExists) as info:
        await client.create_worker(worker_id=worker_id)
    assert info.value.code is StatusCode.ALREADY_EXISTS
    assert info.value.metadata["worker_id"] == worker_id
    assert (await client.list_workers()).total_size == 1


async def test_worker_ids_are_canonical_uuids(client: RuntimeClient) -> None:
    raw = uuid.uuid4()
    spellings = (str(raw).upper(), raw.hex, "{" + str(raw) + "}", raw.urn)
    # one stored form: other spellings of a UUID are refused, never aliased (see
    # tests/api/test_id_rules.py for every RPC)
    for spelling in spellings:
        with pytest.raises(InvalidArgument) as info:
            await client.create_worker(worker_id=spelling)
        assert info.value.field == "worker_id"
    assert (await client.list_workers()).total_size == 0
    created = (await client.create_worker(worker_id=str(raw))).worker
    assert created.worker_id == str(raw)
    assert (await client.list_workers()).total_size == 1


# --- CatalogService: list -------------------------------------------------------------------


async def test_list_workers_pages_through_everything_once(client: RuntimeClient) -> None:
    ids = {(await client.create_worker()).worker.worker_id for _ in range(5)}

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await client.list_workers(page_size=2, page_token=token)
        pages += 1
        assert page.total_size == 5  # the whole list, not what is left after the token
        seen += [w.worker_id for w in page.items]
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert len(seen) == 5
    assert set(seen) == ids
    assert seen == sorted(seen)
    assert [w.worker_id async for w in client.iter_workers(page_size=1)] == seen
    full = await client.list_workers()
    assert (len(full.items), full.total_size, full.next_page_token) == (5, 5, "")


async def test_list_workers_filters_by_labels_and_state(client: RuntimeClient) -> None:
    a = [(await client.create_worker(labels={"team": "a", "n": str(i)})).worker for i in range(3)]
    b = [(await client.create_worker(labels={"team": "b"})).worker for _ in range(2)]
    await client.stop_worker(a[0].worker_id)

    team_a = await client.list_workers(labels={"team": "a"})
    assert {w.worker_id for w in team_a.items} == {w.worker_id for w in a}
    assert team_a.total_size == 3
    both = await client.list_workers(labels={"team": "a", "n": "1"})
    assert [w.worker_id for w in both.items] == [a[1].worker_id]
    assert (await client.list_workers(labels={"team": "c"})).items == ()
    stopped = await client.list_workers(state=WorkerState.STOPPED)
    assert [w.worker_id for w in stopped.items] == [a[0].worker_id]
    idle = await client.list_workers(state=WorkerState.IDLE)
    assert {w.worker_id for w in idle.items} == {w.worker_id for w in [*a[1:], *b]}
    idle_b = await client.list_workers(state=WorkerState.IDLE, labels={"team": "b"})
    assert {w.worker_id for w in idle_b.items} == {w.worker_id for w in b}
    assert (await client.list_workers(state=WorkerState.RUNNING)).total_size == 0


async def test_list_workers_state_filter_sees_running_workers(client: RuntimeClient) -> None:
    busy = (await client.create_worker(profile="very-slow")).worker
    await client.create_worker()
    await client.send_input(busy.worker_id, LONG)

    running = await client.list_workers(state=WorkerState.RUNNING)

    assert [w.worker_id for w in running.items] == [busy.worker_id]
    assert running.items[0].active_run_id
    await client.stop_worker(busy.worker_id)


# --- CatalogService: stop / delete ----------------------------------------------------------


async def test_stop_worker_is_idempotent_keeps_data_and_refuses_input(
    client: RuntimeClient,
) -> None:
    w = (await client.create_worker()).worker
    run = (await client.send_input(w.worker_id, "remember me")).run
    await client.wait_run(run.run_id, timeout=30)

    first = await client.stop_worker(w.worker_id, reason="maintenance")
    second = await client.stop_worker(w.worker_id, reason="again")

    assert first.state is WorkerState.STOPPED
    assert second.state is WorkerState.STOPPED
    assert (await client.get_worker(w.worker_id)).state is WorkerState.STOPPED
    events = (await client.list_events(worker_id=w.worker_id)).events
    stops = [e.payload for e in events if isinstance(e.payload, WorkerStopped)]
    assert stops == [WorkerStopped("maintenance")]
    with pytest.raises(WorkerStoppedError) as info:
        await client.send_input(w.worker_id, "anyone there?")
    assert info.value.code is StatusCode.FAILED_PRECONDITION
    assert info.value.reason == "WORKER_STOPPED"
    # data is kept until DeleteWorker
    transcript = await client.get_transcript(w.worker_id)
    assert [e.message.text for e in transcript.items] == ["remember me", "remember me"]
    assert (await client.get_run(run.run_id)).state is RunState.COMPLETED


async def test_delete_worker_removes_it_and_its_runs(client: RuntimeClient) -> None:
    w = (await client.create_worker()).worker
    keep = (await client.create_worker()).worker
    run = (await client.send_input(w.worker_id, "bye")).run
    await client.wait_run(run.run_id, timeout=30)

    await client.delete_worker(w.worker_id)

    with pytest.raises(WorkerNotFound) as info:
        await client.get_worker(w.worker_id)
    assert info.value.code is StatusCode.NOT_FOUND
    assert info.value.metadata["worker_id"] == w.worker_id
    with pytest.raises(RunNotFound):
        await client.get_run(run.run_id)
    with pytest.raises(WorkerNotFound):
        await client.get_transcript(w.worker_id)
    listed = await client.list_workers()
    assert [x.worker_id for x in listed.items] == [keep.worker_id]
    events = (await client.list_events(worker_id=w.worker_id)).events
    assert isinstance(events[-1].payload, WorkerDeleted)
    with pytest.raises(WorkerNotFound):
        await client.delete_worker(w.worker_id)


async def test_delete_a_running_worker_cancels_its_run_first(client: RuntimeClient) -> None:
    w = (await client.create_worker(profile="very-slow")).worker
    accepted = await client.send_input(w.worker_id, LONG)

    await client.delete_worker(w.worker_id)

    events = (await client.list_events(after_seq=accepted.seq, worker_id=w.worker_id)).events
    finished = [e.payload.run for e in events if isinstance(e.payload, RunFinished)]
    assert [(r.run_id, r.state) for r in finished] == [(accepted.run.run_id, RunState.CANCELLED)]
    assert isinstance(events[-1].payload, WorkerDeleted)
    info = await client.get_runtime()
    assert (info.workers.total, info.active_runs) == (0, 0)
    await eventually(lambda: not _run_tasks())


def _run_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name().startswith("run-") and not t.done()]


async def test_stop_and_delete_refuse_other_spellings_of_the_id(client: RuntimeClient) -> None:
    w = (await client.create_worker()).worker
    upper = w.worker_id.upper()

    # one spelling per id (the canonical one): the others are refused by every RPC alike, so a
    # stop cannot succeed under a spelling that a worker-filtered event reader would not match
    for call in (client.stop_worker(upper), client.delete_worker(upper)):
        with pytest.raises(InvalidArgument) as info:
            await call
        assert info.value.field == "worker_id"
    assert (await client.get_worker(w.worker_id)).state is WorkerState.IDLE

    stopped = await client.stop_worker(w.worker_id)
    assert stopped.state is WorkerState.STOPPED
    events = (await client.list_events(worker_id=w.worker_id)).events
    assert any(isinstance(e.payload, WorkerStopped) for e in events)
    await client.delete_worker(w.worker_id)
    with pytest.raises(WorkerNotFound):
        await client.get_worker(w.worker_id)
    events = (await client.list_events(worker_id=w.worker_id)).events
    assert isinstance(events[-1].payload, WorkerDeleted)
