"""Host policy parsing, path overlap and the stored worker record (pure units, real files)."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime_server.model import MountMode, Worker, WorkerState, Workspace
from runtime_server.runtime import (
    ConfigError,
    HostPolicy,
    Runtime,
    effective_tools,
    overlaps,
    parse_config,
    real_parts,
)
from runtime_server.store import PutWorker, SqliteStore, codec


def test_the_default_policy_denies_workspaces_and_protects_git() -> None:
    policy = parse_config({}).policy
    assert policy.allowed_roots == ()
    assert policy.protected_paths == (".git",)
    assert policy.allowed_capabilities == ("fs.read", "fs.write", "clock")


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"workspaces": {"allowed_roots": ["relative"]}}, "workspaces.allowed_roots[0]"),
        ({"workspaces": {"allowed_roots": "/srv"}}, "workspaces.allowed_roots"),
        ({"workspaces": {"protected_paths": ["../x"]}}, "workspaces.protected_paths[0]"),
        ({"workspaces": {"protected_paths": ["/abs"]}}, "workspaces.protected_paths[0]"),
        ({"workspaces": {"max_mounts": -1}}, "workspaces.max_mounts"),
        ({"workspaces": {"surprise": 1}}, "workspaces.surprise"),
        ({"capabilities": {"allowed": ["shell"]}}, "capabilities.allowed"),
        ({"capabilities": {"denied": []}}, "capabilities.denied"),
        (
            {"workspaces": {"max_mounts": 2}, "limits": {"max_mounts": 3}},
            "workspaces.max_mounts",
        ),
    ],
)
def test_bad_policy_config_names_the_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace("[", r"\[").replace("]", r"\]")):
        parse_config(data)


def test_overlap_is_component_wise_never_a_string_prefix(tmp_path: Path) -> None:
    for d in ("a/b", "ab"):
        (tmp_path / d).mkdir(parents=True)
    (tmp_path / "alias").symlink_to("a")
    a, b, ab = (real_parts(str(tmp_path / d)) for d in ("a", "a/b", "ab"))
    assert overlaps(a, b)
    assert overlaps(b, a)
    assert overlaps(a, a)
    assert not overlaps(a, ab)
    assert real_parts(str(tmp_path / "alias")) == a


def test_effective_tools() -> None:
    tools = ("clock", "read_file", "list_files", "write_file", "edit_file", "custom")
    ro, rw = Workspace("/w"), Workspace("/w", root_mode=MountMode.READ_WRITE)
    everything = HostPolicy()
    assert effective_tools(tools, (), everything, None) == ("clock",)
    assert effective_tools(tools, (), everything, ro) == ("clock", "read_file", "list_files")
    assert effective_tools(tools, (), everything, rw) == tools[:5]
    assert effective_tools(tools, ("fs.write",), everything, rw) == ("write_file", "edit_file")
    no_write = HostPolicy(allowed_capabilities=("fs.read",))
    assert effective_tools(tools, (), no_write, rw) == ("read_file", "list_files")


def test_a_record_stored_before_tools_were_recorded_decodes_as_unknown() -> None:
    w = Worker("w", "r", WorkerState.IDLE, "echo", tools=("clock",), capabilities=("clock",))
    obj = codec.worker_to_obj(w)
    assert codec.worker_from_obj(obj) == w
    legacy = {k: v for k, v in obj.items() if k not in ("tools", "capabilities")}
    assert codec.worker_from_obj(legacy).tools is None  # the Runtime computes it on load
    none = Worker("w", "r", WorkerState.IDLE, "echo")
    assert codec.worker_from_obj(codec.worker_to_obj(none)).tools == ()


async def test_a_worker_stored_before_tools_were_recorded_gets_them_at_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "data" / "runtime.sqlite3"
    path.parent.mkdir()
    store = SqliteStore(path)
    await store.open("01a00000-0000-7000-8000-000000000000")
    legacy = Worker(
        "01a00000-0000-7000-8000-000000000001", "r", WorkerState.IDLE, "files", tools=None
    )
    store.write([], [PutWorker(legacy)])  # as an older version stored it: no "tools" key
    await store.flush()
    await store.close()
    config = parse_config({"profiles": {"files": {"provider": "builtin", "tools": ["clock"]}}})
    rt = Runtime(store=SqliteStore(path), config=config)
    await rt.start()
    try:
        assert (await rt.get_worker(legacy.worker_id)).tools == ("clock",)
    finally:
        await rt.close()
