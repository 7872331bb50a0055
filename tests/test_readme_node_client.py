"""The README's Node.js client (@grpc/grpc-js + @grpc/proto-loader, built from proto/ alone) runs
against a real ``serve``: it decodes an error's ErrorInfo with the shipped google/rpc files and
streams a run to its RunFinished.

``make test`` installs the two npm packages (pinned) into ``.node/`` and points ``NODE_PATH`` there;
the tests themselves never reach a registry. Where ``node`` or the packages are missing the test
skips, except under ``CI=true``, where it fails: CI must run every README snippet.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from serving import REPO_ROOT, ServeProcessFactory, env

BOUND = 60.0
NODE = shutil.which("node")


def _node_has(*packages: str) -> bool:
    if NODE is None:
        return False
    probe = ";".join(f"require.resolve({p!r})" for p in packages)
    done = subprocess.run(
        [NODE, "-e", probe], cwd=REPO_ROOT, env=env(), capture_output=True, timeout=BOUND
    )
    return done.returncode == 0


def readme_js() -> str:
    text = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```js\n(.*?)^```$", text, re.S | re.M)
    assert len(blocks) == 1, "the README has one Node.js example"
    return str(blocks[0])


def test_the_readme_has_the_node_example() -> None:
    code = readme_js()
    assert "@grpc/grpc-js" in code
    assert "google/rpc" in code


async def test_the_readme_node_client_runs(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    if not _node_has("@grpc/grpc-js", "@grpc/proto-loader", "protobufjs"):
        missing = "node and the npm packages @grpc/grpc-js, @grpc/proto-loader are not installed"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing} (make test installs them with npm)")
        pytest.skip(missing)
    server = await serve_process(None, store="memory")
    script = tmp_path / "client.js"
    script.write_text(readme_js(), encoding="utf-8")
    proc = await asyncio.create_subprocess_exec(
        str(NODE), str(script),
        cwd=REPO_ROOT,  # the example loads proto/ relative to the repository root
        env={**env(), "TARGET": server.target, "NODE_PATH": os.environ.get("NODE_PATH", "")},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    text = out.decode() + err.decode()
    assert proc.returncode == 0, text
    assert "hello from node" in text
    assert "[RUN_STATE_COMPLETED]" in text
    assert "WORKER_NOT_FOUND" in text  # the ErrorInfo, decoded with proto/google/rpc
