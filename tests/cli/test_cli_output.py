"""CLI details a user notices (issue 8, item 9), through the real console entry point in
subprocesses against a real server: JSON errors, ``--version``, one ``--help`` listing ``serve``,
``health``, ``cancel``'s line, ``make serve DATA_DIR=``, and counted nouns in the RECOVERED
diagnostic. (``--follow`` saying "waiting for server…" is in
tests/reliability/test_shutdown_delivers_final_event.py.)"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from serving import REPO_ROOT, env

from runtime_server.model import Diagnostic
from runtime_server.runtime import Runtime
from runtime_server.store import SqliteStore

if TYPE_CHECKING:
    from serving import Served, ServeFactory

BOUND = 30.0
UNKNOWN = "0190a0a0-0000-7000-8000-000000000000"
SERVICE = "worker_runtime.v1.CatalogService"


async def cli(*args: str, token: str | None = None) -> tuple[int, str, str]:
    extra = {"WORKER_RUNTIME_TOKEN": token} if token else {}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime_server.cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT, env={**env(), **extra},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_json_errors_are_json_on_stderr_with_reason_and_metadata(served: Served) -> None:
    rc, out, err = await cli("--target", served.target, "--json", "workers", "get", UNKNOWN)
    assert rc == 1
    assert out == ""
    body = json.loads(err)["error"]
    assert body["reason"] == "WORKER_NOT_FOUND"
    assert body["code"] == "NOT_FOUND"
    assert body["metadata"]["worker_id"] == UNKNOWN
    assert UNKNOWN in body["message"]
    # without --json: the one human line, as before
    rc, _, err = await cli("--target", served.target, "workers", "get", UNKNOWN)
    assert rc == 1
    assert err.startswith("error: WORKER_NOT_FOUND: ")


async def test_version_and_one_help_for_every_command() -> None:
    rc, out, _ = await cli("--version")
    assert rc == 0
    assert out.startswith("worker-runtime ")
    rc, out, _ = await cli("--help")
    assert rc == 0
    for command in ("serve", "health", "runtime", "workers", "send", "events"):
        assert f"    {command} " in out, command
    rc, out, _ = await cli("serve", "--help")
    assert rc == 0
    assert "--tls-client-ca" in out
    rc, _, err = await cli("no-such-command")
    assert rc == 2
    assert len(err.strip().splitlines()) == 1, err


async def test_health_command(served: Served) -> None:
    rc, out, err = await cli("--target", served.target, "health")
    assert (rc, out) == (0, "SERVING\n"), err
    rc, out, err = await cli("--target", served.target, "--json", "health", "--service", "nope")
    assert (rc, out) == (1, "")
    assert json.loads(err)["error"]["code"] == "NOT_FOUND"  # an unknown service
    rc, out, _ = await cli("--target", served.target, "--json", "health", "--service", SERVICE)
    assert (rc, json.loads(out)) == (0, {"service": SERVICE, "status": "SERVING"})
    await served.server.stop(0)
    rc, out, err = await cli("--target", served.target, "health", "--timeout", "2")
    assert rc == 1
    assert "UNAVAILABLE" in err


async def test_health_needs_no_token(serve: ServeFactory) -> None:
    served = await serve(auth_token="tok-health-1")
    rc, out, err = await cli("--target", served.target, "health")
    assert (rc, out) == (0, "SERVING\n"), err


async def test_cancel_names_the_state_once(served: Served) -> None:
    client = served.client
    worker = (await client.create_worker(profile="very-slow")).worker
    # a minute on very-slow: still active when the CLI, started in a fresh interpreter on a
    # loaded machine, cancels it (six words, 3 s, were not always enough)
    accepted = await client.send_input(worker.worker_id, " ".join(["word"] * 120))
    rc, out, err = await cli("--target", served.target, "cancel", accepted.run.run_id)
    assert rc == 0, err
    assert "CANCELLED: CANCELLED" not in out
    assert out.strip() == f"run {accepted.run.run_id} CANCELLED: cancelled by request"


def test_make_serve_takes_a_data_dir() -> None:
    make = shutil.which("make")
    if make is None:
        pytest.skip("make is not installed")
    out = subprocess.run(
        [make, "-n", "serve", "DATA_DIR=/srv/wr-data"],
        cwd=REPO_ROOT, capture_output=True, text=True, check=True, timeout=BOUND,
    ).stdout  # fmt: skip
    line = next(x for x in out.splitlines() if "worker-runtime serve" in x)
    assert "--data-dir /srv/wr-data" in line


async def test_recovered_diagnostic_counts_in_good_english(tmp_path: Path) -> None:
    path = tmp_path / "rt.sqlite3"
    rt = Runtime(store=SqliteStore(path))
    await rt.start()
    await rt.create_worker()
    await rt.close()
    rt = Runtime(store=SqliteStore(path))
    await rt.start()
    try:
        messages = [
            d.message
            for d in (await rt.list_diagnostics(page_size=100)).items
            if isinstance(d, Diagnostic) and d.code == "RECOVERED"
        ]
    finally:
        await rt.close()
    assert len(messages) == 1
    assert messages[0].startswith("recovered 1 worker; 0 runs marked INTERRUPTED"), messages
