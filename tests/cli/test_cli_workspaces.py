"""The CLI's workspace options and ``claims`` command against a real server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from console_script import cli, needs_console_script

from runtime_client import MountMode
from runtime_server.runtime import HostPolicy

if TYPE_CHECKING:
    from serving import ServeFactory

pytestmark = needs_console_script


async def test_create_with_a_workspace_and_list_claims(serve: ServeFactory, tmp_path: Path) -> None:
    (tmp_path / "app").mkdir()
    (tmp_path / "shared").mkdir()
    config = {"profiles": {"coder": {"provider": "builtin", "tools": ["read_file", "write_file"]}}}
    served = await serve(config=config, policy=HostPolicy(allowed_roots=(str(tmp_path),)))
    rc, out, err = await cli(
        served.target, "workers", "create", "--profile", "coder",
        "--workspace", str(tmp_path / "app"), "--rw",
        "--mount", f"{tmp_path / 'shared'}:ro", "--capability", "fs.read",
    )  # fmt: skip
    assert rc == 0, err
    worker_id = out.strip()
    w = await served.client.get_worker(worker_id)
    assert w.workspace is not None
    assert w.workspace.root_mode is MountMode.READ_WRITE
    assert [m.mode for m in w.workspace.mounts] == [MountMode.READ_ONLY]
    assert (w.capabilities, w.tools) == (("fs.read",), ("read_file",))

    rc, out, err = await cli(served.target, "workers", "get", worker_id)
    assert rc == 0, err
    assert "fs.read" in out
    assert "read_file" in out
    rc, out, err = await cli(served.target, "--json", "claims")
    assert rc == 0, err
    claims = {(c["worker_id"], c["path"], c["mode"]) for c in json.loads(out)}
    assert claims == {
        (worker_id, str((tmp_path / "app").resolve()), "READ_WRITE"),
        (worker_id, str((tmp_path / "shared").resolve()), "READ_ONLY"),
    }
    # a second read-write claim on the same root: the CLI reports the conflict, exit code != 0
    rc, out, err = await cli(
        served.target, "workers", "create", "--workspace", str(tmp_path / "app"), "--rw"
    )
    assert rc != 0
    assert "WORKSPACE_CONFLICT" in err or "overlaps" in err
