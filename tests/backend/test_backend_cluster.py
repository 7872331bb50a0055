"""``worker-backend cluster``: N real ``worker-runtime serve`` processes and the Backend, started
by one command and driven through the Backend's HTTP API (its registry).

One end-to-end test walks the scale-out story: a worker created and run on each runtime; one
runtime killed with SIGKILL; the others keep serving (new workers are placed on them and their
runs complete) while the killed one is shown UNREACHABLE and its worker stale; SIGTERM to the
command then leaves no process behind. Smaller tests check the command's argument errors and that
the generated Backend config is one the Backend and the registry accept, and that the children
stop even when the command itself is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
from backend_serving import CSRF, eventually
from serving import PYTHON, REPO_ROOT, START_TIMEOUT, env

from backend.cluster import Child, backend_config_text
from backend.config import load_config
from runtime_client import RegistryConfig

CONSOLE = re.compile(r"^console: (http://127\.0\.0\.1:\d+)$", re.MULTILINE)
RUNTIME_LINE = re.compile(
    r"^  (runtime-\d+)\s+(127\.0\.0\.1:\d+)\s+runtime_id (\S+) pid (\d+) ", re.MULTILINE
)
BACKEND_PID = re.compile(r"^  backend\s+config \S+ pid (\d+) ", re.MULTILINE)

# Only the cluster's runtimes offer this profile (not the Backend's embedded runtime), so a
# create without runtime_id must be placed on one of them.
RUNTIME_CONFIG = """\
[profiles.cluster-echo]
provider = "builtin"
options = { delay_ms = 10 }
"""


BUNDLE = '[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\n'


def _cluster_argv(base: Path, *extra: str) -> list[str]:
    return [str(PYTHON), "-m", "backend.cli", "cluster", "--base-dir", str(base), *extra]


def _processes_mentioning(needle: str) -> list[int]:
    """Live (non-zombie) processes whose command line contains ``needle``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if needle in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


async def _run_to_end(http: httpx.AsyncClient, rid: str, wid: str, text: str) -> dict[str, Any]:
    resp = await http.post(
        f"/api/runtimes/{rid}/workers/{wid}/input", json={"text": text}, headers=CSRF
    )
    assert resp.status_code == 202, resp.text
    run_id = resp.json()["run"]["run_id"]
    final: dict[str, Any] = {}

    async def finished() -> bool:
        run = (await http.get(f"/api/runtimes/{rid}/runs/{run_id}")).json()["run"]
        final.update(run)
        return run["state"] not in ("QUEUED", "RUNNING")

    await eventually(finished, timeout=START_TIMEOUT)
    return final


async def _runtimes(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    body = (await http.get("/api/runtimes")).json()
    return {r["alias"]: r for r in body["runtimes"] if r["kind"] == "remote"}


async def test_cluster_survives_a_killed_runtime_and_stops_without_orphans(
    tmp_path: Path,
) -> None:
    base = tmp_path / "cluster"
    config = tmp_path / "runtime.toml"
    config.write_text(RUNTIME_CONFIG, encoding="utf-8")
    out_path = tmp_path / "cluster.out"
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / "team.toml").write_text(BUNDLE, encoding="utf-8")
    argv = _cluster_argv(base, "--runtimes", "3", "--runtime-config", str(config))
    argv += ["--listen", "127.0.0.1:0", "--grace", "1", "--bundles-dir", str(bundles)]
    with out_path.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - only forks; the waits below poll
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env()
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT * 3
        while not CONSOLE.search(out_path.read_text(errors="replace")):
            assert proc.poll() is None, out_path.read_text(errors="replace")
            assert time.monotonic() < deadline, out_path.read_text(errors="replace")
            await asyncio.sleep(0.1)
        text = out_path.read_text(errors="replace")
        match = CONSOLE.search(text)
        assert match is not None
        lines = {m[0]: (m[1], m[2], int(m[3])) for m in RUNTIME_LINE.findall(text)}
        assert sorted(lines) == ["runtime-1", "runtime-2", "runtime-3"], text
        assert len({target for target, _, _ in lines.values()}) == 3  # a port each
        backend_pid = BACKEND_PID.search(text)
        assert backend_pid is not None, text
        pids = [pid for _, _, pid in lines.values()] + [int(backend_pid[1])]
        # each runtime has its own data dir (its own SQLite file), and no token is printed
        for name in lines:
            assert (base / name / "data" / "runtime.sqlite3").exists()
        token = (base / "runtime.token").read_text().strip()
        assert token not in text
        assert token not in (base / "backend.toml").read_text()

        async with httpx.AsyncClient(base_url=match[1], timeout=30) as http:

            async def all_ready() -> bool:
                rts = await _runtimes(http)
                return len(rts) == 3 and all(r["state"] == "READY" for r in rts.values())

            await eventually(all_ready, timeout=START_TIMEOUT)

            async def bundle_everywhere() -> bool:  # --bundles-dir: pushed to all 3 + embedded
                (team,) = (await http.get("/api/bundles")).json()["bundles"]
                places = [p["state"] for p in team["runtimes"]]
                return places == ["present"] * 4

            await eventually(bundle_everywhere, timeout=START_TIMEOUT)
            rts = await _runtimes(http)
            # the registry reached each runtime as the one the command started (its runtime_id)
            assert {a: r["runtime_id"] for a, r in rts.items()} == {
                a: rid for a, (_, rid, _) in lines.items()
            }

            # a worker on each runtime, each running to completion
            placed: dict[str, str] = {}
            for alias, r in sorted(rts.items()):
                resp = await http.post(
                    "/api/workers",
                    json={"runtime_id": r["runtime_id"], "profile": "cluster-echo"},
                    headers=CSRF,
                )
                assert resp.status_code == 201, resp.text
                wid = resp.json()["worker"]["worker_id"]
                placed[alias] = wid
                run = await _run_to_end(http, r["runtime_id"], wid, f"hello {alias}")
                assert run["state"] == "COMPLETED", run

            # a crash: runtime-2 is killed with no chance to clean up
            killed_rid, killed_pid = lines["runtime-2"][1], lines["runtime-2"][2]
            os.kill(killed_pid, signal.SIGKILL)

            async def shown_unreachable() -> bool:
                return bool((await _runtimes(http))["runtime-2"]["state"] == "UNREACHABLE")

            await eventually(shown_unreachable, timeout=START_TIMEOUT)
            workers = (await http.get("/api/workers")).json()["workers"]
            by_id = {w["worker"]["worker_id"]: w for w in workers}
            assert by_id[placed["runtime-2"]]["stale"] is True
            assert by_id[placed["runtime-1"]]["stale"] is False
            assert by_id[placed["runtime-3"]]["stale"] is False

            # the rest keep serving: new workers (placed by the registry) land on live runtimes
            # and their runs complete; the old workers there take new input too
            live = {lines["runtime-1"][1], lines["runtime-3"][1]}
            for i in range(4):
                resp = await http.post(
                    "/api/workers", json={"profile": "cluster-echo"}, headers=CSRF
                )
                assert resp.status_code == 201, resp.text
                rid, wid = resp.json()["runtime_id"], resp.json()["worker"]["worker_id"]
                assert rid in live, (rid, killed_rid)
                run = await _run_to_end(http, rid, wid, f"after the crash {i}")
                assert run["state"] == "COMPLETED", run
            for alias in ("runtime-1", "runtime-3"):
                run = await _run_to_end(http, lines[alias][1], placed[alias], "still here")
                assert run["state"] == "COMPLETED", run

            # the runtime-less worker is an error of its own, not a hang: 503 within the budget
            resp = await http.post(
                f"/api/runtimes/{killed_rid}/workers/{placed['runtime-2']}/input",
                json={"text": "anyone?"},
                headers=CSRF,
            )
            assert resp.status_code == 503, resp.text

        async def reported() -> bool:
            return "runtime-2 exited (signal 9); 2 runtime(s) keep serving" in out_path.read_text()

        await eventually(reported, timeout=START_TIMEOUT)
        assert proc.poll() is None  # the supervisor kept running

        # SIGTERM: everything stops, in order, and nothing is left behind
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(proc.wait, START_TIMEOUT * 2)
        assert code == 0, out_path.read_text(errors="replace")
        assert out_path.read_text().rstrip().endswith("stopped")
        assert _processes_mentioning(str(base)) == []
        assert [pid for pid in pids if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _processes_mentioning(str(base)):
            os.kill(pid, signal.SIGKILL)


def _alive(pid: int) -> bool:
    """The process exists and is not a zombie (one exited, not yet reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_cluster_rejects_bad_arguments(tmp_path: Path) -> None:
    for extra, message in (
        (("--runtimes", "0"), "--runtimes: must be 1..64"),
        (("--base-port", "80"), "--base-port: must leave room"),
        (("--grace", "-1"), "--grace: must be >= 0"),
        # checked before any runtime starts (they were started, then the Backend refused, with
        # a message pointing at the generated config's token_env, which the command overwrites)
        (("--listen", "0.0.0.0:8080"), "--listen: the cluster's console has no login token"),
        (("--listen", "nohost"), "--listen: must be HOST:PORT"),
        (("--listen", "127.0.0.1:70000"), "--listen: must be HOST:PORT"),
    ):
        done = subprocess.run(
            _cluster_argv(tmp_path / "c", *extra),
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=env(),
            timeout=START_TIMEOUT,
            check=False,
        )
        assert done.returncode == 2, done
        assert message in done.stderr
        assert not (tmp_path / "c").exists()  # nothing started, nothing written


def test_a_runtime_that_cannot_start_stops_the_others(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[nonsense]\n", encoding="utf-8")
    base = tmp_path / "c"
    done = subprocess.run(
        _cluster_argv(base, "--runtimes", "2", "--runtime-config", str(bad)),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        env=env(),
        timeout=START_TIMEOUT * 2,
        check=False,
    )
    assert done.returncode == 1, done
    assert "runtime-1 did not start" in done.stderr
    assert "unknown section" in done.stderr  # the end of its log is quoted
    assert _processes_mentioning(str(base)) == []


def test_the_generated_config_is_accepted_by_the_backend_and_the_registry(
    tmp_path: Path,
) -> None:
    children = [
        Child(f"runtime-{i}", None, tmp_path, f"127.0.0.1:{5000 + i}", f"rid-{i}")  # type: ignore[arg-type]
        for i in (1, 2)
    ]
    path = tmp_path / "backend.toml"
    path.write_text(backend_config_text(children), encoding="utf-8")
    config = load_config(path, env={"WORKER_CLUSTER_RUNTIME_TOKEN": "t0k"})
    assert [(r.target, r.alias, r.expected_runtime_id) for r in config.runtimes] == [
        ("127.0.0.1:5001", "runtime-1", "rid-1"),
        ("127.0.0.1:5002", "runtime-2", "rid-2"),
    ]
    assert all(r.token == "t0k" for r in config.runtimes)
    assert config.data_dir == tmp_path / "backend-data"
    registry = RegistryConfig.load(path)
    assert [r.token_env for r in registry.runtimes] == ["WORKER_CLUSTER_RUNTIME_TOKEN"] * 2


async def test_children_stop_when_the_command_itself_is_killed(tmp_path: Path) -> None:
    """kill -9 of the supervisor runs none of its code: the kernel's parent-death signal
    (PR_SET_PDEATHSIG, Linux) still stops the runtime and the Backend."""
    base = tmp_path / "cluster"
    out_path = tmp_path / "cluster.out"
    argv = _cluster_argv(base, "--runtimes", "1", "--listen", "127.0.0.1:0", "--grace", "1")
    with out_path.open("wb") as out:
        proc = subprocess.Popen(  # noqa: ASYNC220 - only forks; the waits below poll
            argv, stdout=out, stderr=subprocess.STDOUT, cwd=REPO_ROOT, env=env()
        )
    try:

        def started() -> bool:
            assert proc.poll() is None, out_path.read_text(errors="replace")
            return CONSOLE.search(out_path.read_text(errors="replace")) is not None

        await eventually(started, timeout=START_TIMEOUT * 3)
        children = set(_processes_mentioning(str(base))) - {proc.pid}
        assert len(children) == 2  # the runtime and the Backend
        proc.kill()
        await asyncio.to_thread(proc.wait, START_TIMEOUT)
        await eventually(lambda: _processes_mentioning(str(base)) == [], timeout=START_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _processes_mentioning(str(base)):
            os.kill(pid, signal.SIGKILL)
