"""Workspaces through a real gRPC server: host policy, validation, the allocation matrix, the
claims listing and capabilities (real filesystem; SQLite where the data dir matters)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import engine
from engine import ScriptedProvider
from engine.testing import text_reply, tool_reply
from runtime_client import (
    CapabilityNotAllowed,
    InvalidArgument,
    Mount,
    MountMode,
    RunState,
    RuntimeClient,
    WorkspaceClaim,
    WorkspaceConflict,
    WorkspaceNotAllowed,
)
from runtime_client import Workspace as Ws
from runtime_server.model import Limits
from runtime_server.runtime import HostPolicy, parse_config
from runtime_server.store import SqliteStore

if TYPE_CHECKING:
    from serving import ServeFactory

RW, RO = MountMode.READ_WRITE, MountMode.READ_ONLY
ALL_TOOLS = ["clock", "read_file", "list_files", "write_file", "edit_file"]


def files_config(allowed_caps: list[str] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "profiles": {"files": {"provider": "builtin", "tools": ALL_TOOLS}},
    }
    if allowed_caps is not None:
        cfg["capabilities"] = {"allowed": allowed_caps}
    return cfg


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """``tmp/allowed/{a/b, ab, other}`` plus ``alias -> a`` and a file; ``tmp/outside``."""
    base = tmp_path / "allowed"
    for d in ("a/b/c", "ab", "other", "data"):
        (base / d).mkdir(parents=True)
    (base / "alias").symlink_to("a")
    (base / "file.txt").write_text("x")
    (tmp_path / "outside").mkdir()
    (base / "escape").symlink_to("../outside")
    return base


async def client_for(serve: ServeFactory, tree: Path, **kwargs: Any) -> RuntimeClient:
    """A served runtime whose config's host policy allows workspaces below ``tree``."""
    config = kwargs.pop("config", files_config())
    policy = replace(parse_config(config).policy, allowed_roots=(str(tree),))
    return (await serve(config=config, policy=policy, **kwargs)).client


def real(path: Path | str) -> str:
    return os.path.realpath(path)


def claims_of(*pairs: tuple[str, Path | str, MountMode]) -> set[tuple[str, str, MountMode]]:
    return {(w, os.path.realpath(p), m) for w, p, m in pairs}


async def all_claims(client: RuntimeClient, worker_id: str = "") -> set[tuple[str, str, MountMode]]:
    out: list[WorkspaceClaim] = []
    token = ""
    while True:
        page = await client.list_workspace_claims(
            worker_id=worker_id, page_size=2, page_token=token
        )
        out += page.items
        token = page.next_page_token
        if not token:
            break
    assert len(out) == len(set(out))
    return {(c.worker_id, c.path, c.mode) for c in out}


# --- host policy ------------------------------------------------------------------------------


async def test_no_allowed_roots_refuses_every_workspace(serve: ServeFactory, tree: Path) -> None:
    client = (await serve(config=files_config())).client
    with pytest.raises(WorkspaceNotAllowed) as info:
        await client.create_worker(workspace=Ws(str(tree / "a")))
    assert info.value.field == "workspace.root"
    # no workspace requested: fine, and no file tools
    w = (await client.create_worker(profile="files")).worker
    assert w.workspace is None
    assert w.tools == ("clock",)


async def test_paths_outside_allowed_roots_are_refused(serve: ServeFactory, tree: Path) -> None:
    client = await client_for(serve, tree)
    evil = tree.parent / "allowed-evil"  # a sibling whose name starts like the allowed root
    evil.mkdir()
    cases = [
        (Ws(str(evil)), "workspace.root"),
        (Ws(str(tree.parent / "outside")), "workspace.root"),
        (Ws(str(tree / "escape")), "workspace.root"),  # a symlink inside pointing out
        (Ws(str(tree / "a"), (Mount(str(tree.parent)),)), "workspace.mounts[0].path"),
        (Ws(str(tree.parent / "nonexistent")), "workspace.root"),  # not probed: not allowed
    ]
    for ws, field in cases:
        with pytest.raises(WorkspaceNotAllowed) as info:
            await client.create_worker(workspace=ws)
        assert info.value.field == field, ws
    assert await all_claims(client) == set()


async def test_a_workspace_overlapping_the_data_dir_is_refused(
    serve: ServeFactory, tree: Path
) -> None:
    store = SqliteStore(tree / "data" / "runtime.sqlite3")
    client = await client_for(serve, tree, store=store)
    for ws in (Ws(str(tree)), Ws(str(tree / "data")), Ws(str(tree / "a"), (Mount(str(tree)),))):
        with pytest.raises(WorkspaceNotAllowed, match="runtime's own data"):
            await client.create_worker(workspace=ws)
    assert (await client.create_worker(workspace=Ws(str(tree / "a")))).worker.workspace


async def test_workspace_validation_names_the_field(serve: ServeFactory, tree: Path) -> None:
    client = await client_for(serve, tree, limits=None)
    a = str(tree / "a")
    cases = [
        (Ws(str(tree / "file.txt")), "workspace.root"),
        (Ws(str(tree / "missing")), "workspace.root"),
        (Ws(a, (Mount(str(tree / "ab")), Mount(str(tree / "ab")))), "workspace.mounts[1].path"),
        (Ws(a, (Mount(str(tree / "alias")),)), "workspace.mounts[0].path"),  # same dir as root
        (Ws(a, (Mount(str(tree / "ab") + "\x00x"),)), "workspace.mounts[0].path"),
        (Ws(a, (Mount(str(tree / "a/../ab")),)), "workspace.mounts[0].path"),
        (Ws(a, (Mount("relative/path"),)), "workspace.mounts[0].path"),
    ]
    for ws, field in cases:
        with pytest.raises(InvalidArgument) as info:
            await client.create_worker(workspace=ws)
        assert info.value.field == field, (ws, info.value)


async def test_max_mounts_is_a_reported_limit(serve: ServeFactory, tree: Path) -> None:
    config = {**files_config(), "workspaces": {"max_mounts": 1}}
    assert parse_config(config).limits["max_mounts"] == 1
    policy = HostPolicy(allowed_roots=(str(tree),))
    served = await serve(config=config, policy=policy)
    client = served.client
    assert (await client.get_runtime()).limits.max_mounts == 1
    two = (Mount(str(tree / "ab")), Mount(str(tree / "other")))
    with pytest.raises(InvalidArgument) as info:
        await client.create_worker(workspace=Ws(str(tree / "a"), two))
    assert info.value.field == "workspace.mounts"


# --- the allocation matrix --------------------------------------------------------------------


async def test_allocation_matrix(serve: ServeFactory, tree: Path) -> None:
    client = await client_for(serve, tree)
    a, ab, b, c = tree / "a", tree / "ab", tree / "a" / "b", tree / "a" / "b" / "c"
    w1 = (await client.create_worker(workspace=Ws(str(b), root_mode=RW))).worker

    # RW/RW nested, either way round, and equal -> conflict naming the holder and path
    for ws in (Ws(str(a), root_mode=RW), Ws(str(c), root_mode=RW), Ws(str(b), root_mode=RW)):
        with pytest.raises(WorkspaceConflict) as info:
            await client.create_worker(workspace=ws)
        assert info.value.holder_worker_id == w1.worker_id
        assert info.value.held_path == real(b)
        assert info.value.metadata["field"] == "workspace.root"
    # ... also through a read-write mount, and through a symlink alias of the same directory
    with pytest.raises(WorkspaceConflict) as info:
        await client.create_worker(workspace=Ws(str(ab), (Mount(str(c), RW),)))
    assert info.value.metadata["field"] == "workspace.mounts[0].path"
    with pytest.raises(WorkspaceConflict):
        await client.create_worker(workspace=Ws(str(tree / "alias"), root_mode=RW))

    # RW/RO -> allowed (both ways); RO/RO -> allowed; a sibling with a common prefix -> allowed
    w2 = (await client.create_worker(workspace=Ws(str(a)))).worker
    w3 = (await client.create_worker(workspace=Ws(str(c), (Mount(str(a)),)))).worker
    w4 = (await client.create_worker(workspace=Ws(str(ab), root_mode=RW))).worker
    # a worker's own places never conflict with each other
    w5 = (await client.create_worker(workspace=Ws(str(tree / "other"), root_mode=RW))).worker

    expected = claims_of(
        (w1.worker_id, b, RW), (w2.worker_id, a, RO), (w3.worker_id, c, RO),
        (w3.worker_id, a, RO), (w4.worker_id, ab, RW), (w5.worker_id, tree / "other", RW),
    )  # fmt: skip
    assert await all_claims(client) == expected
    assert await all_claims(client, w3.worker_id) == claims_of(
        (w3.worker_id, c, RO), (w3.worker_id, a, RO)
    )
    info_ = await client.get_runtime()
    assert (info_.workspace_claims, info_.workspace_claims_read_write) == (6, 3)

    # release on stop: the path is free again; delete releases too
    await client.stop_worker(w1.worker_id)
    w6 = (await client.create_worker(workspace=Ws(str(a), root_mode=RW))).worker
    with pytest.raises(WorkspaceConflict):
        await client.create_worker(workspace=Ws(str(b), root_mode=RW))
    await client.delete_worker(w6.worker_id)
    w7 = (await client.create_worker(workspace=Ws(str(b), root_mode=RW))).worker
    expected = (expected - claims_of((w1.worker_id, b, RW))) | claims_of((w7.worker_id, b, RW))
    assert await all_claims(client) == expected
    # the listing equals the live set: every live worker's places, nothing else
    live = [w async for w in client.iter_workers() if w.state.value != "STOPPED"]
    from_workers = set()
    for w in live:
        assert w.workspace is not None
        from_workers.add((w.worker_id, real(w.workspace.root), w.workspace.root_mode))
        from_workers |= {(w.worker_id, real(m.path), m.mode) for m in w.workspace.mounts}
    assert from_workers == expected


async def test_fifty_concurrent_creates_on_one_path_one_wins(
    serve: ServeFactory, tree: Path
) -> None:
    client = await client_for(serve, tree)
    ws = Ws(str(tree / "a"), root_mode=RW)
    results = await asyncio.gather(
        *(client.create_worker(workspace=ws) for _ in range(50)), return_exceptions=True
    )
    winners = [r for r in results if not isinstance(r, BaseException)]
    losers = [r for r in results if isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(e, WorkspaceConflict) for e in losers), losers[:3]
    holder = winners[0].worker.worker_id
    assert {e.holder_worker_id for e in losers if isinstance(e, WorkspaceConflict)} == {holder}
    assert await all_claims(client) == claims_of((holder, tree / "a", RW))


# --- capabilities -----------------------------------------------------------------------------


async def test_capabilities_narrow_the_tools_and_are_shown(serve: ServeFactory, tree: Path) -> None:
    client = await client_for(serve, tree)
    rw = Ws(str(tree / "a"), root_mode=RW)
    w = (await client.create_worker(profile="files", workspace=rw, capabilities=["fs.read"])).worker
    assert w.capabilities == ("fs.read",)
    assert w.tools == ("read_file", "list_files")
    assert (await client.get_worker(w.worker_id)).tools == w.tools
    listed = [x async for x in client.iter_workers()]
    assert [x.tools for x in listed] == [w.tools]
    # empty = the profile's tools (within the policy); a read-only workspace has no write tools
    w2 = (await client.create_worker(profile="files", workspace=Ws(str(tree / "ab")))).worker
    assert w2.capabilities == ()
    assert w2.tools == ("clock", "read_file", "list_files")
    w3 = (
        await client.create_worker(profile="files", workspace=Ws(str(tree / "other"), root_mode=RW))
    ).worker
    assert w3.tools == tuple(ALL_TOOLS)
    with pytest.raises(InvalidArgument) as info:
        await client.create_worker(capabilities=["clock", "net.anything"])
    assert info.value.field == "capabilities[1]"
    assert (await client.get_runtime()).capabilities.worker_capabilities == (
        "fs.read", "fs.write", "clock",
    )  # fmt: skip


async def test_a_capability_the_host_does_not_allow_is_permission_denied(
    serve: ServeFactory, tree: Path
) -> None:
    client = await client_for(serve, tree, config=files_config(["fs.read", "clock"]))
    with pytest.raises(CapabilityNotAllowed) as info:
        await client.create_worker(profile="files", capabilities=["fs.read", "fs.write"])
    assert info.value.capability == "fs.write"
    # with no capabilities asked, the host's policy still applies
    rw = Ws(str(tree / "a"), root_mode=RW)
    w = (await client.create_worker(profile="files", workspace=rw)).worker
    assert w.tools == ("clock", "read_file", "list_files")


async def test_a_tool_outside_the_set_is_an_error_result_and_a_diagnostic(
    serve: ServeFactory, tree: Path
) -> None:
    (tree / "a" / "notes.txt").write_text("keep me\n")
    args = '{"path": "notes.txt", "content": "overwritten"}'
    provider = ScriptedProvider(
        [
            tool_reply(("c1", "write_file", args), ("c2", "read_file", '{"path": "notes.txt"}')),
            text_reply("done"),
        ]
    )

    def factory(_profile: Any) -> engine.Provider:
        return provider

    client = await client_for(serve, tree, provider_factory=factory)
    rw = Ws(str(tree / "a"), root_mode=RW)
    w = (await client.create_worker(profile="files", workspace=rw, capabilities=["fs.read"])).worker
    run = (await client.send_input(w.worker_id, "overwrite notes")).run
    assert (await client.wait_run(run.run_id, timeout=30)).state is RunState.COMPLETED

    results: Mapping[str, Any] = {
        e.message.tool_call_id: e.message
        for e in (await client.get_transcript(w.worker_id)).items
        if e.message.tool_call_id
    }
    assert results["c1"].is_error
    assert "unknown tool 'write_file'" in results["c1"].text
    assert (results["c2"].is_error, results["c2"].text) == (False, "keep me\n")
    assert (tree / "a" / "notes.txt").read_text() == "keep me\n"
    diags = (await client.list_diagnostics()).items
    assert [d.code for d in diags if d.worker_id == w.worker_id] == ["TOOL_NOT_ALLOWED"]


async def test_tools_stay_on_the_vetted_real_path_when_a_root_symlink_moves(
    serve: ServeFactory, tree: Path
) -> None:
    (tree / "a" / "s.txt").write_text("vetted\n")
    (tree.parent / "outside" / "s.txt").write_text("OUTSIDE\n")
    link = tree / "link"
    link.symlink_to("a")
    read = ("c1", "read_file", '{"path": "s.txt"}')
    provider = ScriptedProvider([tool_reply(read), text_reply("ok")] * 2)

    def factory(_profile: Any) -> engine.Provider:
        return provider

    client = await client_for(serve, tree, provider_factory=factory)
    w = (await client.create_worker(profile="files", workspace=Ws(str(link)))).worker
    # the host retargets the worker's root symlink outside the allowed roots after create
    link.unlink()
    link.symlink_to("../../outside")
    run = (await client.send_input(w.worker_id, "read it")).run
    assert (await client.wait_run(run.run_id, timeout=30)).state is RunState.COMPLETED
    results = [
        e.message.text
        for e in (await client.get_transcript(w.worker_id)).items
        if e.message.tool_call_id
    ]
    assert results == ["vetted\n"]
    # a real path component replaced by a symlink: refused, not followed
    (tree / "a").rename(tree / "a-moved")
    (tree / "a").symlink_to("../outside")
    run = (await client.send_input(w.worker_id, "again")).run
    assert (await client.wait_run(run.run_id, timeout=30)).state is RunState.COMPLETED
    results = [
        e.message.text
        for e in (await client.get_transcript(w.worker_id)).items
        if e.message.tool_call_id
    ]
    assert "not available" in results[-1]
    assert "OUTSIDE" not in results[-1]


async def test_claims_pages_are_cut_by_size_and_tokens_are_checked(
    serve: ServeFactory, tree: Path
) -> None:
    deep = tree / ("d" * 100) / ("e" * 100)
    dirs = [deep / f"w{i}" for i in range(5)]
    for d in dirs:
        d.mkdir(parents=True)
    # a page holds about 600 characters: a claim here is 300 or more
    client = await client_for(serve, tree, limits=Limits(max_message_bytes=4 * (4096 + 600)))
    for d in dirs:
        await client.create_worker(workspace=Ws(str(d), root_mode=RW))
    page = await client.list_workspace_claims(page_size=100)
    assert 0 < len(page.items) < 3
    assert page.total_size == 5
    assert page.next_page_token
    assert len(await all_claims(client)) == 5
    with pytest.raises(InvalidArgument) as info:
        await client.list_workspace_claims(page_token="bogus")
    assert info.value.field == "page_token"


async def test_a_retried_create_returns_the_first_worker_not_a_conflict(
    serve: ServeFactory, tree: Path
) -> None:
    client = await client_for(serve, tree)
    ws = Ws(str(tree / "other"), root_mode=RW)
    first = await client.create_worker(workspace=ws, request_id="create-1")
    (tree / "other").rename(tree / "other-gone")  # even if the directory has gone since
    again = await client.create_worker(workspace=ws, request_id="create-1")
    assert again.worker.worker_id == first.worker.worker_id
    assert len(await all_claims(client)) == 1
