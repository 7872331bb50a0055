"""Issue 13 item 5, through the Backend: a real ``worker-backend serve`` subprocess with
``bundles_dir``, its embedded runtime (SQLite) and a real remote ``worker-runtime serve``
subprocess on a fresh SQLite data dir. Puts are counted on the runtime's side of the wire (its
``grpc_server_handled_total{grpc_method="PutConfigBundle"}``, ``--metrics-listen``) and by the
Backend's own count in ``GET /api/bundles``; the runtime's own ListBundles says what it holds.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
from backend_serving import REMOTE_TOKEN, Console, ConsoleFactory, eventually
from serving import PYTHON, REPO_ROOT, START_TIMEOUT, ServeFactory, ServeProcess, env

from backend.config import BackendConfigError, check_bundles_dir, parse_config
from runtime_client import ConfigBundleRef, RuntimeClient

TEAM = b'[prompts]\nterse = "Be terse."\n\n[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\nprompt = "terse"\n'  # noqa: E501
OPS = b'[profiles.oncall]\nprovider = "builtin"\nmodel = "echo"\n'
METRICS = ("--metrics-listen", "127.0.0.1:0")
_METRICS_PORT = re.compile(r"metrics\s+http://127\.0\.0\.1:(\d+)/metrics")


def bundles_dir(tmp_path: Path, **files: bytes) -> Path:
    d = tmp_path / "bundles"
    d.mkdir(exist_ok=True)
    for name, content in files.items():
        (d / f"{name}.toml").write_bytes(content)
    (d / "README.txt").write_text("not a bundle: only *.toml files count")
    return d


async def rpc_count(remote: ServeProcess, method: str, code: str = "") -> int:
    """How many ``method`` calls the runtime handled (with ``code``, or any)."""
    port = None

    def announced() -> bool:
        nonlocal port
        port = _METRICS_PORT.search(remote.stdout_path.read_text(errors="replace"))
        return port is not None

    await eventually(announced, timeout=START_TIMEOUT)
    assert port is not None
    async with httpx.AsyncClient() as http:
        text = (await http.get(f"http://127.0.0.1:{port[1]}/metrics")).text
    total = 0
    for line in text.splitlines():
        if not line.startswith("grpc_server_handled_total{"):
            continue
        if f'grpc_method="{method}"' in line and (not code or f'grpc_code="{code}"' in line):
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


async def bundle_states(c: Console) -> dict[str, Any]:
    resp = await c.call("GET", "/api/bundles")
    assert resp.status_code == 200, resp.text
    return {b["id"]: b for b in resp.json()["bundles"]}


async def present_everywhere(c: Console, bundle_id: str, digest: str = "") -> None:
    async def check() -> bool:
        b = (await bundle_states(c)).get(bundle_id)
        if b is None or (digest and b["digest"] != digest):
            return False
        return len(b["runtimes"]) == 2 and all(r["state"] == "present" for r in b["runtimes"])

    await eventually(check, timeout=START_TIMEOUT)


def remote_client(c: Console) -> RuntimeClient:
    return c.remote.client(token=REMOTE_TOKEN)


async def create(c: Console, rid: str, profile: str, bundle: str) -> httpx.Response:
    body = {"runtime_id": rid, "profile": profile, "bundle": bundle}
    return await c.call("POST", "/api/workers", json=body)


async def run_completes(c: Console, rid: str, worker_id: str) -> str:
    run = await c.send(rid, worker_id, "hello bundle")

    async def done() -> bool:
        got = (await c.call("GET", f"/api/runtimes/{rid}/runs/{run['run_id']}")).json()["run"]
        run.update(got)
        return bool(got["state"] in ("COMPLETED", "FAILED", "CANCELLED"))

    await eventually(done, timeout=START_TIMEOUT)
    assert run["state"] == "COMPLETED", run
    return str(run["state"])


async def test_a_fresh_runtime_gets_each_bundle_once_and_a_lost_one_is_put_again_on_create(
    console: ConsoleFactory, tmp_path: Path
) -> None:
    d = bundles_dir(tmp_path, team=TEAM, ops=OPS)
    c = await console(bundles_dir=d, remote_extra=METRICS)
    emb, rem = await c.runtime_ids()
    await present_everywhere(c, "team")
    await present_everywhere(c, "ops")
    team = (await bundle_states(c))["team"]
    assert team["profiles"] == ["helper"]
    assert team["error"] == ""
    assert team["ref"] == f"team@{team['digest']}"

    # eager push on READY: one put per bundle on the fresh remote runtime, none more
    assert await rpc_count(c.remote, "PutConfigBundle") == 2
    held = await remote_client(c).list_bundles()
    assert sorted((b.id, b.digest) for b in held.items) == sorted(
        (b["id"], b["digest"]) for b in (await bundle_states(c)).values()
    )

    # creating a worker with the bundle's profile: no further put
    resp = await create(c, rem, "helper", team["ref"])
    assert resp.status_code == 201, resp.text
    worker = resp.json()["worker"]
    assert worker["config_bundle"] == {"id": "team", "digest": team["digest"]}
    assert await rpc_count(c.remote, "PutConfigBundle") == 2
    await run_completes(c, rem, worker["worker_id"])
    # the embedded runtime too, and without naming a runtime (placed on a READY one)
    resp = await c.call("POST", "/api/workers", json={"profile": "helper", "bundle": team["ref"]})
    assert resp.status_code == 201, resp.text
    assert resp.json()["runtime_id"] in (emb, rem)

    # lazy push: the runtime lost "ops" (deleted on it directly); the create puts it and retries
    ops = (await bundle_states(c))["ops"]
    await remote_client(c).delete_bundle("ops", ops["digest"])
    created_before = await rpc_count(c.remote, "CreateWorker", "OK")
    resp = await create(c, rem, "oncall", ops["ref"])
    assert resp.status_code == 201, resp.text
    assert await rpc_count(c.remote, "PutConfigBundle") == 3  # exactly one more
    # the create was tried twice: once refused (FAILED_PRECONDITION), once created
    assert await rpc_count(c.remote, "CreateWorker", "FAILED_PRECONDITION") == 1
    assert await rpc_count(c.remote, "CreateWorker", "OK") == created_before + 1
    listed = (await c.call("GET", "/api/bundles")).json()["puts"]
    puts = {p["runtime_id"]: p["puts"] for p in listed}
    assert puts[rem] == 3
    # and on the Backend's /metrics, by alias (no bundle id as a label)
    metrics = (await c.call("GET", "/metrics")).text
    assert 'worker_backend_bundle_puts_total{alias="remote"} 3.0' in metrics
    assert 'worker_backend_bundles{alias="remote",state="present"} 2.0' in metrics
    assert 'worker_backend_bundles{alias="embedded",state="failed"} 0.0' in metrics


async def test_a_bundle_the_backend_does_not_hold_is_a_typed_error_and_nothing_is_put(
    console: ConsoleFactory, tmp_path: Path
) -> None:
    d = bundles_dir(tmp_path, team=TEAM)
    c = await console(bundles_dir=d, remote_extra=METRICS)
    _, rem = await c.runtime_ids()
    await present_everywhere(c, "team")
    before = await rpc_count(c.remote, "PutConfigBundle")
    for ref in ("ghost@sha256:" + "0" * 64, "team@sha256:" + "1" * 64):
        resp = await create(c, rem, "helper", ref)
        assert resp.status_code == 409, resp.text
        error = resp.json()["error"]
        assert error["reason"] == "CONFIG_BUNDLE_NOT_FOUND"
        assert error["metadata"]["bundle_id"] == ref.split("@")[0]
    assert await rpc_count(c.remote, "PutConfigBundle") == before
    resp = await create(c, rem, "helper", "team-without-digest")
    assert resp.status_code == 400
    assert resp.json()["error"]["metadata"]["field"] == "bundle"
    resp = await create(c, rem, "nope", f"team@{(await bundle_states(c))['team']['digest']}")
    assert resp.status_code == 400, resp.text
    assert "bundle team" in resp.json()["error"]["message"]


async def test_bad_bundle_files_are_reported_per_bundle_and_the_backend_keeps_serving(
    console: ConsoleFactory, tmp_path: Path
) -> None:
    d = bundles_dir(
        tmp_path,
        team=TEAM,
        broken=b'[profiles.x]\nprovider = "builtin"\nmodel = \n',
        secret=b'[profiles.y]\nprovider = "builtin"\nmodel = "echo"\napi_key = "sk-1"\n',
        deep=b"a = " + b"[" * 5000 + b"]" * 5000 + b"\n",
    )
    (d / "bad name!.toml").write_bytes(OPS)
    c = await console(bundles_dir=d, remote_extra=METRICS)
    _, rem = await c.runtime_ids()
    await present_everywhere(c, "team")

    async def secret_failed() -> bool:
        places = (await bundle_states(c))["secret"]["runtimes"]
        return len(places) == 2 and all(p["state"] == "failed" for p in places)

    await eventually(secret_failed, timeout=START_TIMEOUT)
    states = await bundle_states(c)
    # a TOML error is found by the Backend, names its line, and is pushed nowhere
    assert "not valid TOML" in states["broken"]["error"]
    assert "line 3" in states["broken"]["error"]
    assert states["broken"]["ref"] == ""
    assert {p["state"] for p in states["broken"]["runtimes"]} == {"missing"}
    assert "file name" in states["bad name!"]["error"]
    assert states["deep"]["error"] == "not valid TOML: nested too deeply"
    # forbidden content is each runtime's judgement: failed there, with its reason and key
    for place in states["secret"]["runtimes"]:
        assert place["reason"].startswith("CONFIG_BUNDLE_INVALID"), place
        assert "api_key" in place["reason"]
    assert "sk-1" not in str(c.bodies)
    # the Backend serves on: healthz, and a create with the good bundle
    assert (await c.call("GET", "/healthz")).status_code == 200
    resp = await create(c, rem, "helper", states["team"]["ref"])
    assert resp.status_code == 201, resp.text


async def test_an_edited_file_is_a_new_version_and_a_restarted_runtime_is_synced_again(
    console: ConsoleFactory, tmp_path: Path
) -> None:
    d = bundles_dir(tmp_path, team=TEAM)
    c = await console(bundles_dir=d, remote_extra=METRICS)
    _, rem = await c.runtime_ids()
    await present_everywhere(c, "team")
    first = (await bundle_states(c))["team"]["digest"]

    # an edit: read again on the next look, pushed to every READY runtime at once
    (d / "team.toml").write_bytes(TEAM.replace(b"Be terse.", b"Be very terse."))
    second = (await bundle_states(c))["team"]["digest"]
    assert second != first
    await present_everywhere(c, "team", second)
    versions = await remote_client(c).list_bundles(id="team")
    assert sorted(b.digest for b in versions.items) == sorted([first, second])
    resp = await create(c, rem, "helper", f"team@{first}")  # the old version stays usable
    assert resp.status_code == 201, resp.text

    # the runtime loses the new version, then crashes and comes back on its data dir: on READY
    # again the Backend lists what it holds and puts only what is missing
    await remote_client(c).delete_bundle("team", second)
    c.remote.kill9()
    c.remote = await c.restart_remote()

    async def back() -> bool:
        return await rpc_count(c.remote, "PutConfigBundle") == 1

    await eventually(back, timeout=START_TIMEOUT * 2)
    await present_everywhere(c, "team", second)
    held = await remote_client(c).list_bundles(id="team")
    assert sorted(b.digest for b in held.items) == sorted([first, second])
    assert ConfigBundleRef("team", second) in {b.ref for b in held.items}


async def test_the_readme_example_config_and_bundle_work(
    serve: ServeFactory, tmp_path: Path
) -> None:
    section = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("**Config bundles.**")[1]
    config, bundle = re.findall(r"```toml\n(.*?)```", section, re.DOTALL)[:2]
    cfg = parse_config(tomllib.loads(config), env={}, base=tmp_path)
    assert cfg.bundles_dir == tmp_path / "bundles"
    cfg.bundles_dir.mkdir()
    (cfg.bundles_dir / "team.toml").write_text(bundle, encoding="utf-8")
    content = (cfg.bundles_dir / "team.toml").read_bytes()
    put = await (await serve()).client.put_bundle("team", content)
    assert put.created
    assert put.bundle.profiles == ("helper",)


def test_bundles_dir_is_checked_with_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(BackendConfigError, match="bundles_dir: must be a str"):
        parse_config({"bundles_dir": 5}, env={})
    missing = parse_config({"bundles_dir": "nope"}, env={}, base=tmp_path).bundles_dir
    with pytest.raises(BackendConfigError, match=r"bundles_dir: .*nope does not exist"):
        check_bundles_dir(missing)
    (tmp_path / "file.toml").write_text("")
    with pytest.raises(BackendConfigError, match="is not a directory"):
        check_bundles_dir(tmp_path / "file.toml")
    argv = [str(PYTHON), "-m", "backend.cli", "serve", "--listen", "127.0.0.1:0"]
    argv += ["--data-dir", str(tmp_path / "data"), "--bundles-dir", str(tmp_path / "nope")]
    done = subprocess.run(
        argv, capture_output=True, text=True, cwd=REPO_ROOT, env=env(), timeout=START_TIMEOUT * 2
    )
    assert done.returncode == 2
    assert "bundles_dir" in done.stderr
    assert "does not exist" in done.stderr
