"""Issue 13 item 6: ``worker-runtime bundles put|list|get|delete`` and ``workers create --bundle``
as real subprocesses against a real server."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING

from console_script import cli, needs_console_script

if TYPE_CHECKING:
    from serving import Served

pytestmark = needs_console_script

BUNDLE = b"""\
[prompts]
short = "Be short."

[profiles.helper]
provider = "builtin"
model = "echo"
prompt = "short"
"""


async def test_put_create_list_get_delete(served: Served, tmp_path: Path) -> None:
    path = tmp_path / "team.toml"
    path.write_bytes(BUNDLE)
    digest = "sha256:" + hashlib.sha256(BUNDLE).hexdigest()

    rc, out, err = await cli(served.target, "bundles", "put", str(path))
    assert rc == 0, err
    assert out == f"team@{digest}\n"  # the id defaults to the file's stem
    rc, out, err = await cli(served.target, "bundles", "put", str(path), "--id", "team")
    assert (rc, out) == (0, f"team@{digest}\n")
    assert "already stored" in err

    rc, out, err = await cli(
        served.target, "workers", "create", "--profile", "helper", "--bundle", f"team@{digest}"
    )
    assert rc == 0, err
    worker_id = out.strip()
    assert (await served.client.get_worker(worker_id)).config_bundle is not None

    rc, out, err = await cli(served.target, "bundles", "list")
    assert rc == 0, err
    assert "team" in out
    assert digest in out
    rc, out, err = await cli(served.target, "--json", "bundles", "list", "--id", "team")
    assert rc == 0, err
    (listed,) = json.loads(out)
    assert (listed["digest"], listed["profiles"], listed["referencing_workers"]) == (
        digest,
        ["helper"],
        [worker_id],
    )
    rc, out, err = await cli(served.target, "bundles", "get", "team", digest)
    assert rc == 0, err
    assert worker_id in out
    rc, out, err = await cli(served.target, "bundles", "get", "team", digest, "--content")
    assert (rc, out.encode()) == (0, BUNDLE)

    rc, out, err = await cli(served.target, "bundles", "delete", "team", digest)
    assert rc == 1
    assert "CONFIG_BUNDLE_IN_USE" in err
    rc, out, err = await cli(served.target, "workers", "delete", worker_id)
    assert rc == 0, err
    rc, out, err = await cli(served.target, "bundles", "delete", "team", digest)
    assert rc == 0, err
    rc, out, err = await cli(served.target, "bundles", "get", "team", digest)
    assert rc == 1
    assert "CONFIG_BUNDLE_NOT_FOUND" in err


async def test_refusals_and_usage_errors(served: Served, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[profiles.p]\nprovider = "builtin"\nmodel = "echo"\napi_key = "k"\n')
    rc, _, err = await cli(served.target, "bundles", "put", str(bad))
    assert rc == 1
    assert "CONFIG_BUNDLE_INVALID" in err
    assert "profiles.p.api_key" in err
    assert "line 4" in err
    rc, _, err = await cli(served.target, "bundles", "put", str(tmp_path / "missing.toml"))
    assert rc == 2
    assert "cannot read" in err
    rc, _, err = await cli(served.target, "workers", "create", "--bundle", "no-digest")
    assert rc == 2
    assert "ID@DIGEST" in err
