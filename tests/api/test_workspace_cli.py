"""The CLI's workspace options and ``claims`` command against a real server."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime_client import MountMode
from runtime_server.runtime import HostPolicy

if TYPE_CHECKING:
    from serving import ServeFactory

CLI = Path(sys.executable).parent / "worker-runtime"
pytestmark = pytest.mark.skipif(not CLI.exists(), reason="the console script is not installed")
BOUND = 30.0


async def cli(target: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "--target", target, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


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
