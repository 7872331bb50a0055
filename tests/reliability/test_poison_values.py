"""Guarantee 6 against a real ``serve``: no client can store a value that breaks listing or replay
for everyone. Every request field has a limit (a 900,000-character digest is refused), and eight
workers at the limits in every field — in 4-byte characters — leave ListEvents (page 100), the
default ListWorkers and SubscribeEventBatches from seq 0 working, for the typed client and for a
plain grpc channel with grpc's default 4 MiB receive limit alike."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import grpc.aio
import pytest
from serving import ServeProcessFactory

from runtime_client import ConfigBundleRef, InvalidArgument, Limits, Mount, Workspace
from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import catalog_service_pb2_grpc as cgrpc
from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc

BOUND = 60.0  # seconds: a safety net on a shared 2-core machine, not a speed assertion
BIG = "\N{GRINNING FACE}"  # 4 bytes of UTF-8: the most bytes a character can take
# Twenty-four, not the six of the original report: at the new limits one such worker encodes to
# about 200 kB (its workspace paths must be real directories now, so the file system bounds them
# below max_path_chars), so it takes this many to pass the 4 MiB message limit unpaged.
WORKERS = 24


def deep_dir(base: Path) -> str:
    """A real directory whose path is as long as Linux allows (PATH_MAX 4096 bytes), in 4-byte
    characters (63 to a component: NAME_MAX is 255 bytes)."""
    path = base
    while len(str(path / (BIG * 63)).encode()) < 4000:
        path = path / (BIG * 63)
    path.mkdir(parents=True, exist_ok=True)
    return str(path)


def maximal_worker_fields(lim: Limits, roots: Path) -> dict[str, object]:
    """Every string and list of CreateWorker at its limit, in 4-byte characters (workspace paths
    as long as real directories can be)."""

    def path(i: int) -> str:
        return deep_dir(roots / f"m{i}")

    return {
        "display_name": BIG * lim.max_display_name_chars,
        "labels": {
            f"{i:03}" + BIG * (lim.max_label_chars - 3): BIG * lim.max_label_chars
            for i in range(lim.max_labels)
        },
        "workspace": Workspace(path(-1), tuple(Mount(path(i)) for i in range(lim.max_mounts))),
    }


def policy_config(tmp_path: Path) -> Path:
    (tmp_path / "ws").mkdir(exist_ok=True)
    config = tmp_path / "runtime.toml"
    config.write_text(f'[workspaces]\nallowed_roots = ["{tmp_path / "ws"}"]\n', encoding="utf-8")
    return config


async def test_a_huge_digest_is_refused(serve_process: ServeProcessFactory, tmp_path: Path) -> None:
    sp = await serve_process(tmp_path / "data")
    client = sp.client()
    with pytest.raises(InvalidArgument) as info:
        await client.create_worker(config_bundle=ConfigBundleRef("bundle", "d" * 900_000))
    assert info.value.field == "config_bundle.digest"
    assert (await client.list_workers()).total_size == 0


async def test_workers_at_every_limit_leave_listing_and_replay_working(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    sp = await serve_process(tmp_path / "data", config=policy_config(tmp_path))
    client = sp.client()
    lim = (await client.get_runtime()).limits
    assert lim.max_id_chars
    assert lim.max_ref_chars
    assert lim.max_path_chars
    assert lim.max_mounts

    created = []
    fields = maximal_worker_fields(lim, tmp_path / "ws")  # read-only places: shared by all
    # a bundle reference must name a stored bundle: the longest id a bundle may have
    echo = b'[profiles.echo]\nprovider = "builtin"\nmodel = "echo"\n'
    fields["config_bundle"] = (
        await client.put_bundle("b" * lim.max_bundle_id_chars, echo)
    ).bundle.ref
    for _ in range(WORKERS):
        created.append((await client.create_worker(**fields)).worker)  # type: ignore[arg-type]
        # one more of anything is refused, naming the field
        labels = dict(fields["labels"])  # type: ignore[call-overload]
        labels["x"] = "y"
        with pytest.raises(InvalidArgument) as info:
            await client.create_worker(labels=labels)
        assert info.value.field == "labels"
    ws = created[0].workspace
    assert ws is not None
    assert len(ws.mounts) == lim.max_mounts
    with pytest.raises(InvalidArgument) as info:
        await client.create_worker(workspace=Workspace(ws.root, (*ws.mounts, Mount(ws.root))))
    assert info.value.field == "workspace.mounts"
    with pytest.raises(InvalidArgument) as info:
        await client.create_worker(
            workspace=Workspace(ws.root, (Mount("/" + "p" * lim.max_path_chars),))
        )
    assert info.value.field == "workspace.mounts[0].path"
    ids = sorted(w.worker_id for w in created)

    # the typed client: ListEvents (page 100), the default ListWorkers, SubscribeEventBatches
    page = await client.list_events(after_seq=0, page_size=100)
    assert page.events
    assert page.events[0].seq == 1
    seen: list[str] = []
    token = ""
    while True:
        workers = await client.list_workers(page_token=token)
        seen += [w.worker_id for w in workers.items]
        token = workers.next_page_token
        if not token:
            break
    assert seen == ids
    for w in created:
        assert (await client.get_worker(w.worker_id)) == w
    last = (await client.get_runtime()).last_seq
    got: list[int] = []
    async with asyncio.timeout(BOUND):
        async for event in client.subscribe(after_seq=0, resume=False):
            got.append(event.seq)
            if event.seq >= last:
                break
    assert got == list(range(1, last + 1))

    # every other caller: a plain channel with grpc's default 4 MiB receive limit
    async with grpc.aio.insecure_channel(sp.target) as channel:
        obs = ogrpc.ObservationServiceStub(channel)
        cat = cgrpc.CatalogServiceStub(channel)
        cursor = 0
        plain: list[int] = []
        while True:
            resp = await obs.ListEvents(
                opb.ListEventsRequest(after_seq=cursor, page_size=100), timeout=BOUND
            )
            if not resp.events:
                break
            plain += [e.seq for e in resp.events]
            cursor = resp.next_after_seq
        assert plain == list(range(1, last + 1))
        listed = await cat.ListWorkers(cpb.ListWorkersRequest(), timeout=BOUND)
        assert listed.workers
        assert listed.total_size == WORKERS
        call = obs.SubscribeEventBatches(opb.SubscribeEventsRequest(after_seq=0))
        batched: list[int] = []
        async with asyncio.timeout(BOUND):
            while not batched or batched[-1] < last:
                batch = await call.read()
                assert batch is not grpc.aio.EOF
                batched += [e.seq for e in batch.events if e.seq]
        call.cancel()
        assert batched == list(range(1, last + 1))
