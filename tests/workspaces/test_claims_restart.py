"""Claims survive ``kill -9``: a real ``serve`` process on a real SQLite file rebuilds them from
the live workers in creation order; a worker whose path now conflicts (a symlink retargeted while
the runtime was down) is stopped with a diagnostic instead of sharing the path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serving import ServeProcessFactory, all_events

from runtime_client import (
    MountMode,
    RuntimeClient,
    WorkerState,
    WorkerStopped,
    Workspace,
    WorkspaceConflict,
    WorkspaceNotAllowed,
)

RW, RO = MountMode.READ_WRITE, MountMode.READ_ONLY


async def claims(client: RuntimeClient) -> set[tuple[str, str, MountMode]]:
    page = await client.list_workspace_claims()
    assert not page.next_page_token
    return {(c.worker_id, c.path, c.mode) for c in page.items}


def real(path: Path) -> str:
    return os.path.realpath(path)


async def test_claims_after_kill9_and_restart(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    allowed = tmp_path / "allowed"
    for d in ("a", "b", "c", "d"):
        (allowed / d).mkdir(parents=True)
    link = allowed / "link"
    link.symlink_to("b")
    link2 = allowed / "link2"
    link2.symlink_to("d")
    (tmp_path / "outside").mkdir()
    config = tmp_path / "serve.toml"
    config.write_text(f'[workspaces]\nallowed_roots = ["{allowed}"]\n')
    data = tmp_path / "data"

    sp = await serve_process(data, config=config)
    client = sp.client()
    w1 = (await client.create_worker(workspace=Workspace(str(allowed / "a"), root_mode=RW))).worker
    w2 = (await client.create_worker(workspace=Workspace(str(link), root_mode=RW))).worker
    w3 = (await client.create_worker(workspace=Workspace(str(allowed / "c")))).worker
    w4 = (await client.create_worker(workspace=Workspace(str(allowed / "d"), root_mode=RW))).worker
    await client.stop_worker(w4.worker_id)  # stopped: holds nothing, before or after the crash
    w7 = (await client.create_worker(workspace=Workspace(str(link2)))).worker
    before = {
        (w1.worker_id, real(allowed / "a"), RW),
        (w2.worker_id, real(allowed / "b"), RW),
        (w3.worker_id, real(allowed / "c"), RO),
        (w7.worker_id, real(allowed / "d"), RO),
    }
    assert await claims(client) == before
    sp.kill9()

    # while the runtime is down, w2's root is retargeted onto w1's directory
    link.unlink()
    link.symlink_to("a")
    # ... and w7's root is retargeted outside the allowed roots
    link2.unlink()
    link2.symlink_to("../outside")
    sp2 = await serve_process(data, config=config)
    client2 = sp2.client()

    assert await claims(client2) == {
        (w1.worker_id, real(allowed / "a"), RW),
        (w3.worker_id, real(allowed / "c"), RO),
    }
    assert (await client2.get_worker(w2.worker_id)).state is WorkerState.STOPPED
    assert (await client2.get_worker(w1.worker_id)).state is WorkerState.IDLE
    diags = [d for d in (await client2.list_diagnostics()).items if d.code == "WORKSPACE_CONFLICT"]
    assert [d.worker_id for d in diags] == [w2.worker_id]
    assert w1.worker_id in diags[0].message
    assert (await client2.get_worker(w7.worker_id)).state is WorkerState.STOPPED
    refused = [
        d for d in (await client2.list_diagnostics()).items if d.code == "WORKSPACE_NOT_ALLOWED"
    ]
    assert [d.worker_id for d in refused] == [w7.worker_id]
    stops = [
        e.payload
        for e in await all_events(client2)
        if e.worker_id == w2.worker_id and isinstance(e.payload, WorkerStopped)
    ]
    assert len(stops) == 1
    assert "workspace conflict" in stops[0].reason
    info = await client2.get_runtime()
    assert (info.workspace_claims, info.workspace_claims_read_write) == (2, 1)
    # the rebuilt claims are enforced; the stopped worker's old path is free
    with pytest.raises(WorkspaceConflict) as exc:
        await client2.create_worker(workspace=Workspace(str(allowed / "a"), root_mode=RW))
    assert exc.value.holder_worker_id == w1.worker_id
    w5 = (await client2.create_worker(workspace=Workspace(str(allowed / "b"), root_mode=RW))).worker
    w6 = (await client2.create_worker(workspace=Workspace(str(allowed / "d"), root_mode=RW))).worker
    assert {w5.worker_id, w6.worker_id} <= {c[0] for c in await claims(client2)}

    # a clean restart keeps the same claims (nothing else conflicts now)
    assert sp2.terminate() == 0
    sp3 = await serve_process(data, config=config)
    client3 = sp3.client()
    assert await claims(client3) == {
        (w1.worker_id, real(allowed / "a"), RW),
        (w3.worker_id, real(allowed / "c"), RO),
        (w5.worker_id, real(allowed / "b"), RW),
        (w6.worker_id, real(allowed / "d"), RW),
    }


async def test_serve_refuses_workspaces_over_its_data_dir_and_config(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    config = tmp_path / "conf" / "serve.toml"
    config.parent.mkdir()
    config.write_text(f'[workspaces]\nallowed_roots = ["{tmp_path}"]\n')
    data = tmp_path / "data"
    (tmp_path / "work").mkdir()
    sp = await serve_process(data, config=config)
    client = sp.client()
    for root in (tmp_path, data, config.parent):
        with pytest.raises(WorkspaceNotAllowed, match="runtime's own data"):
            await client.create_worker(workspace=Workspace(str(root), root_mode=RW))
    assert (await client.create_worker(workspace=Workspace(str(tmp_path / "work")))).worker
