"""``serve`` freezes what it loaded at start (``gc.freeze``) once the store is open and recovery is
done, before it says it is serving: no full collection of the garbage collector walks those
objects again. A real ``serve`` child over a SQLite directory with a worker to recover; the
child's ``gc.freeze`` is wrapped to report when it runs and how much it froze (the real freeze
still runs)."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

from serving import REPO_ROOT, SERVE_BANNER

from runtime_client import RuntimeClient, WorkerState

_CHILD = """
import gc, sys
from runtime_server import cli
real = gc.freeze
def freeze():
    real()
    print(f"gc frozen {gc.get_freeze_count()}", flush=True)
gc.freeze = freeze
sys.exit(cli.main(sys.argv[1:]))
"""


def _read(out: Path) -> str:
    return out.read_text(errors="replace")


async def _start(data_dir: Path, out: Path) -> tuple[asyncio.subprocess.Process, str]:
    with out.open("wb") as o:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CHILD, "serve", "--listen", "127.0.0.1:0",
            "--data-dir", str(data_dir), stdout=o, stderr=asyncio.subprocess.STDOUT,
            cwd=REPO_ROOT,
        )  # fmt: skip
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60.0
    while True:
        lines = _read(out).splitlines()
        banner = [m for line in lines if (m := SERVE_BANNER.match(line))]
        if banner:
            return proc, f"{banner[0][1]}:{banner[0][2]}"
        assert proc.returncode is None, _read(out)
        assert loop.time() < deadline, _read(out)
        await asyncio.sleep(0.05)


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 60.0) == 0


async def test_serve_freezes_what_it_loaded_after_recovery(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc, target = await _start(data, tmp_path / "first.out")
    async with RuntimeClient(target) as client:
        wid = (await client.create_worker(profile="echo")).worker.worker_id
        run = await client.send_input(wid, "remember me")
        await client.wait_run(run.run.run_id, timeout=30)
    await _stop(proc)

    out = tmp_path / "second.out"
    proc, target = await _start(data, out)
    try:
        lines = _read(out).splitlines()
        frozen = [i for i, line in enumerate(lines) if line.startswith("gc frozen ")]
        serving = next(i for i, line in enumerate(lines) if SERVE_BANNER.match(line))
        assert len(frozen) == 1, lines  # once, at start
        assert frozen[0] < serving, lines  # before it says it is serving
        count = int(re.sub(r"\D", "", lines[frozen[0]]))
        assert count > 10_000, lines  # the modules and what was loaded (~40,000 objects)
        async with RuntimeClient(target) as client:  # recovery was done before the freeze
            worker = await client.get_worker(wid)
            assert worker.state is WorkerState.IDLE
            page = await client.get_transcript(wid)
            assert [e.message.text for e in page.items] == ["remember me", "remember me"]
    finally:
        await _stop(proc)
