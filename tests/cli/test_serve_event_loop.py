"""``serve`` runs on uvloop by default and on asyncio's own loop with ``--event-loop asyncio``
(runtime_server.event_loop). A real ``serve`` process for each: the banner names the loop the
process is running on (read from the running loop, not from the option), the process's memory
map agrees (uvloop's extension is loaded, or not at all), runs stream gap-free to their
RunFinished over the per-event stream (one gRPC message per event: the path the loop choice is
for) and the batched one, and SIGTERM drains and exits 0."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from serving import ServeProcessFactory, assert_gap_free, run_serve, serve_argv

from runtime_client import RunFinished

BOUND = 60.0  # seconds: a safety net only


def _uvloop_mapped(pid: int) -> bool:
    """Whether the process has uvloop's compiled loop mapped (it is imported only when chosen)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return any("/uvloop/" in line for line in maps.splitlines())


@pytest.mark.parametrize(
    ("flags", "loop"),
    [
        ((), "uvloop"),
        (("--event-loop", "uvloop"), "uvloop"),
        (("--event-loop", "asyncio"), "asyncio"),
    ],
)
async def test_serve_runs_on_the_chosen_event_loop(
    serve_process: ServeProcessFactory, tmp_path: Path, flags: tuple[str, ...], loop: str
) -> None:
    server = await serve_process(tmp_path / "data", extra=flags)
    assert f"\n  event loop {loop}\n" in server.banner + "\n"
    assert _uvloop_mapped(server.proc.pid) == (loop == "uvloop")
    client = server.client()
    created = await client.create_worker(profile="echo")
    wid = created.worker.worker_id
    after = created.seq
    for batched in (False, True):
        events = client.subscribe(wid, after_seq=after, batched=batched)
        accepted = await client.send_input(wid, "one two three four five")
        seqs: list[int] = []
        async with asyncio.timeout(BOUND):
            async for event in events:
                seqs.append(event.seq)
                if isinstance(event.payload, RunFinished):
                    assert event.payload.run.run_id == accepted.run.run_id
                    break
        await events.aclose()
        assert seqs[0] == after + 1
        assert_gap_free(seqs)
        after = seqs[-1]  # the next run's subscription starts after this one
    assert server.terminate() == 0


def test_an_unknown_event_loop_is_a_usage_error() -> None:
    done = run_serve(serve_argv(None, store="memory", extra=["--event-loop", "trio"]))
    assert done.returncode == 2
    assert "--event-loop" in done.stderr
    assert "invalid choice" in done.stderr
