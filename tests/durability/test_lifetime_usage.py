"""Lifetime usage never decreases (issue 8 item 6): a delete takes a worker's usage out of the
runtime-wide figure but not out of the lifetime one, and a real SQLite ``serve`` process killed
with ``kill -9`` right after the delete comes back with the same lifetime totals — in GetUsage,
GetRuntime and the CLI's ``usage`` / ``runtime`` commands."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from serving import PYTHON, REPO_ROOT, ServeProcessFactory, env

from runtime_client import RuntimeClient, UsageSummary

BOUND = 30.0  # seconds: a safety net, never a speed assertion


async def _run(client: RuntimeClient, text: str) -> str:
    worker = (await client.create_worker()).worker  # the built-in echo: tokens are word counts
    accepted = await client.send_input(worker.worker_id, text)
    await client.wait_run(accepted.run.run_id, timeout=BOUND)
    return worker.worker_id


async def _cli(target: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(PYTHON), "-m", "runtime_server.cli", "--target", target, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, cwd=REPO_ROOT, env=env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _totals(summary: UsageSummary) -> tuple[int, int, int, int]:
    return (
        summary.runs,
        summary.usage.total_tokens,
        summary.lifetime_runs,
        summary.lifetime_usage.total_tokens,
    )


async def test_delete_never_lowers_lifetime_usage_and_kill9_restart_keeps_it(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    sp = await serve_process(data)
    client = sp.client()
    kept = await _run(client, "one two three")  # 3 in + 3 out
    gone = await _run(client, "four five six seven")  # 4 in + 4 out
    assert _totals(await client.get_usage()) == (2, 14, 2, 14)

    await client.delete_worker(gone)

    after = await client.get_usage()
    assert _totals(after) == (1, 6, 2, 14)  # the held workers' figure falls; lifetime does not
    info = await client.get_runtime()
    assert (info.usage.total_tokens, info.lifetime_usage.total_tokens) == (6, 14)
    assert (info.lifetime_usage.input_tokens, info.lifetime_runs) == (7, 2)
    worker = await client.get_usage(kept)
    assert (worker.lifetime_usage, worker.lifetime_runs) == (worker.usage, worker.runs)

    sp.kill9()  # the delete was acknowledged: its lifetime record must be durable with it
    sp = await serve_process(data)
    client = sp.client()

    assert await client.get_usage() == after
    info = await client.get_runtime()
    assert (info.usage.total_tokens, info.lifetime_usage.total_tokens) == (6, 14)
    assert info.lifetime_runs == 2
    await _run(client, "eight")  # and it goes on counting: 1 in + 1 out
    assert _totals(await client.get_usage()) == (2, 8, 3, 16)

    usage = json.loads(await _cli(sp.target, "--json", "usage"))
    assert usage["lifetime_usage"]["total_tokens"] == 16
    assert usage["usage"]["total_tokens"] == 8
    text = await _cli(sp.target, "usage")
    assert "lifetime_total_tokens" in text
    assert "16" in text.split("lifetime_total_tokens", 1)[1].splitlines()[0]
    summary = await _cli(sp.target, "runtime")
    assert "lifetime usage" in summary
    assert "over 3 runs" in summary
