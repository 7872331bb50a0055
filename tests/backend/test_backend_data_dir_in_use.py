"""A second Backend on a data directory another one holds refuses with one clear line.

The embedded runtime's SQLite store takes an exclusive lock, so the second process never writes
to the file; but its refusal came as a multi-page traceback from the ASGI lifespan and exit code
3, unlike ``worker-runtime serve``'s one line and exit 2. Now the Backend (its store first) is
started before the port is announced, and a store that cannot be opened is ``error: ...``
naming the file, exit 2. Two real ``worker-backend serve`` processes.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
from backend_serving import start_backend
from serving import PYTHON, REPO_ROOT, START_TIMEOUT, env

CONFIG = '[companion]\nprofile = "echo"\n'


async def test_the_second_backend_refuses_and_the_first_serves_on(tmp_path: Path) -> None:
    first = await start_backend(tmp_path, CONFIG)
    try:
        argv = [
            str(PYTHON),
            "-m",
            "backend.cli",
            "serve",
            "--config",
            str(tmp_path / "backend.toml"),
        ]
        argv += ["--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "backend-data")]
        second = subprocess.run(  # noqa: ASYNC221 - a bounded child run
            argv,
            capture_output=True,
            text=True,
            cwd=REPO_ROOT,
            env=env(),
            timeout=START_TIMEOUT * 2,
        )
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert lines[0].startswith("error: cannot open store ")
        assert "runtime.sqlite3" in lines[0]
        assert "in use" in lines[0]
        assert "serving on" not in second.stdout
        async with httpx.AsyncClient(base_url=first.url, timeout=30) as http:
            assert (await http.get("/healthz")).status_code == 200
            assert (await http.get("/api/workers")).status_code == 200
    finally:
        first.terminate()
    assert "Traceback" not in first.stderr()
