"""Memory stays bounded (issue 7, item 4), measured on a real ``serve`` process.

The figure is the server's resident set (``VmRSS`` in ``/proc/PID/status``). This is a memory
measurement, not a speed assertion: every bound leaves a wide margin for allocator noise, and is
far below what the same workload held before the fix (figures in the docstrings).

- Transcripts are not held whole: 40 inputs of 250,000 four-byte characters (1 MB each, in UTF-8
  and in CPython; 10 workers x 4) grew the resident set by ~157 MB (52 -> 209 MB) before the fix,
  and a restart reloaded every transcript whole. Now only a window of each transcript's newest
  entries is kept (``transcript_window_bytes``; here each worker's last 1 MB answer), and a restart
  loads lengths and open tails only — while every entry is still served (from the store) and
  every run still sends the model its whole history. (The issue's figure, 40 inputs of 1M
  four-byte characters, is the same workload four times larger: too slow for a test on a shared
  machine, as the SQLite file takes ~1 GB of writes.)
- Queued inputs are bounded and finished runs keep no input text: many workers with queued large
  inputs stay within ``max_memory_bytes`` (the rest is refused with MEMORY_BUDGET_EXCEEDED), and
  memory falls once the workers are stopped.
- A memory-store runtime counts its own data against ``max_memory_bytes`` and refuses new input
  with RESOURCE_EXHAUSTED / MEMORY_BUDGET_EXCEEDED when full instead of growing.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from serving import ServeProcess, ServeProcessFactory, eventually

from runtime_client import BusyPolicy, MemoryBudgetExceeded, RunState, RuntimeClient

MB = 1_000_000
FOUR_BYTE = "\U0001f600"  # UTF-8 and CPython's str both store it in four bytes


def rss(sp: ServeProcess) -> int:
    """The server process's resident set, in bytes."""
    for line in Path(f"/proc/{sp.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


def config(path: Path, *, limits: dict[str, int], delay_ms: int = 0) -> Path:
    body = "\n".join(f"{k} = {v}" for k, v in limits.items())
    path.write_text(
        f'[profiles.slow]\nprovider = "builtin"\noptions = {{ delay_ms = {delay_ms} }}\n\n'
        f"[limits]\n{body}\n",
        encoding="utf-8",
    )
    return path


async def finished(client: RuntimeClient, run_id: str) -> None:
    async def done() -> bool:
        return (await client.get_run(run_id)).state.terminal

    await eventually(done, within=60, what=f"run {run_id} finished")


async def settled_rss(sp: ServeProcess) -> int:
    """RSS once the process is quiet (the lowest of a few readings: frees land a bit later)."""
    readings = []
    for _ in range(5):
        await asyncio.sleep(0.2)
        readings.append(rss(sp))
    return min(readings)


async def test_large_transcripts_are_not_kept_in_memory_nor_reloaded(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    # A window of about one 1 MB entry per worker (the default, 4 MiB, would keep four).
    window = 1024 * 1024
    cfg = config(tmp_path / "serve.toml", limits={"transcript_window_bytes": window})
    # No context budget (each 1 MB message is over the default one): the whole history is sent.
    cfg.write_text(
        cfg.read_text() + '[profiles.whole]\nprovider = "builtin"\ncontext_max_tokens = 0\n'
    )
    sp = await serve_process(data, config=cfg)
    client = sp.client()
    assert (await client.get_runtime()).limits.transcript_window_bytes == window
    workers = [(await client.create_worker(profile="whole")).worker.worker_id for _ in range(10)]
    warm = await client.send_input(workers[0], "warm up")  # every code path imported
    await finished(client, warm.run.run_id)
    before = await settled_rss(sp)

    chars = 250_000
    text = FOUR_BYTE * chars
    for _ in range(4):
        for wid in workers:
            accepted = await client.send_input(wid, text)
            await finished(client, accepted.run.run_id)
    after = await settled_rss(sp)
    grown = after - before
    # 40 inputs and 40 answers of 1 MB each passed through: +146 to +157 MB before the fix.
    # Now: the 10 windows (~1 MB each), SQLite's page caches and allocator noise.
    print(f"\n40 x 250k four-byte chars: RSS {before / MB:.0f} -> {after / MB:.0f} MB")
    assert grown < 60 * MB, f"RSS grew by {grown / MB:.0f} MB"

    # Everything is still there: paged from the store.
    total, token, seen = 0, "", 0
    while True:
        page = await client.get_transcript(workers[3], page_size=3, page_token=token)
        total = page.total_size
        seen += len(page.items)
        assert all(len(e.message.text) == chars for e in page.items)
        token = page.next_page_token
        if not token:
            break
    assert (total, seen) == (8, 8)  # 4 inputs and their 4 answers

    assert sp.terminate() == 0
    sp2 = await serve_process(data, config=cfg)
    client2 = sp2.client()
    info = await client2.get_runtime()
    assert info.workers.total == 10
    restarted = await settled_rss(sp2)
    print(f"after restart: RSS {restarted / MB:.0f} MB (fresh start {before / MB:.0f} MB)")
    # Before the fix the 80 MB of transcripts were loaded whole.
    assert restarted - before < 40 * MB, f"restart RSS {restarted / MB:.0f} MB"
    # The next run still sends the model the whole history (read from the store): the echo
    # provider counts a prompt's words, and each message here is one word.
    again = await client2.send_input(workers[5], "and again")
    await finished(client2, again.run.run_id)
    run = await client2.get_run(again.run.run_id)
    assert run.state is RunState.COMPLETED
    assert run.usage.input_tokens == 8 + 2  # 4 inputs + 4 answers, then "and again"


async def test_queued_inputs_are_bounded_and_freed_when_workers_stop(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    """50 workers, each with a long run and inputs of 250,000 characters queued behind it: 300 MB
    asked for. Queued text is held only while queued, within ``max_memory_bytes`` (80 MB here);
    the rest is refused with MEMORY_BUDGET_EXCEEDED. Stopping the workers cancels the queues, and
    finished runs keep no text, so the memory is given back. (Before the fix all of it was taken
    and kept: 200 workers x 17 such inputs held 1.63 GB, and 1.11 GB after every worker stopped.)

    The RSS bound leaves 100 MB over the budget: ~80 MB queued grew the resident set by 127 MB
    on a loaded machine (109 MB with a single malloc arena: part of it is allocator slack) and by
    149 MB once in CI, against a bound of budget + 60 MB that then failed. Asking for 300 MB
    keeps the bound far below what holding everything asked for would take."""
    budget = 80 * MB
    cfg = config(tmp_path / "serve.toml", limits={"max_memory_bytes": budget}, delay_ms=200)
    sp = await serve_process(tmp_path / "data", config=cfg)
    client = sp.client()
    assert (await client.get_runtime()).limits.max_memory_bytes == budget
    workers = [(await client.create_worker(profile="slow")).worker.worker_id for _ in range(50)]
    for wid in workers:  # a run that lasts (200 ms a word) for the inputs to queue behind
        await client.send_input(wid, "long " * 500)
    before = await settled_rss(sp)

    big = "q" * 250_000
    refused: list[MemoryBudgetExceeded] = []
    accepted = 0
    gate = asyncio.Semaphore(16)

    async def fill(wid: str) -> None:
        nonlocal accepted
        for _ in range(24):
            async with gate:
                try:
                    await client.send_input(wid, big, busy_policy=BusyPolicy.ENQUEUE)
                    accepted += 1
                except MemoryBudgetExceeded as exc:
                    refused.append(exc)

    await asyncio.gather(*(fill(w) for w in workers))
    full = await settled_rss(sp)
    info = await client.get_runtime()
    print(
        f"\nqueued {accepted} of {accepted + len(refused)} inputs of 250 kB "
        f"({info.queued_runs} queued); RSS {before / MB:.0f} -> {full / MB:.0f} MB"
    )
    assert refused, "the budget never refused anything"
    assert budget - 2 * 250_000 < info.memory_bytes <= budget  # GetRuntime reports the estimate
    assert refused[0].reason == "MEMORY_BUDGET_EXCEEDED"
    assert refused[0].limit == budget
    assert refused[0].held + refused[0].needed > budget
    assert accepted * 250_000 <= budget
    # Held: the queued text (<= the budget) plus gRPC buffers and allocator slack; holding every
    # input asked for would be over 300 MB.
    assert full - before < budget + 100 * MB, f"RSS grew by {(full - before) / MB:.0f} MB"

    await asyncio.gather(*(client.stop_worker(w) for w in workers))
    stopped = await settled_rss(sp)
    print(f"after stopping every worker: RSS {stopped / MB:.0f} MB")
    info = await client.get_runtime()
    assert info.queued_runs == 0
    assert info.memory_bytes < 10 * MB
    # Most of it is given back (before the fix, 1.11 of 1.63 GB stayed): the queues held ~80 MB;
    # 48-56 MB stay as allocator slack on a loaded machine.
    assert stopped - before < 100 * MB, f"RSS after stop {stopped / MB:.0f} MB"
    assert full - stopped > 40 * MB, f"RSS fell by {(full - stopped) / MB:.0f} MB only"
    # ...and the room is there again: a stopped worker refuses input, a new one takes it.
    fresh = (await client.create_worker(profile="echo")).worker.worker_id
    await client.send_input(fresh, big)


async def test_memory_store_runtime_refuses_input_when_its_budget_is_full(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    """The memory store IS the storage: its transcripts and inputs count against
    ``max_memory_bytes``, and when they fill it new input gets RESOURCE_EXHAUSTED /
    MEMORY_BUDGET_EXCEEDED instead of memory growing without bound. (The event log may take half
    the budget, trimmed oldest first.) Deleting workers gives the room back."""
    budget = 20 * MB
    cfg = config(tmp_path / "serve.toml", limits={"max_memory_bytes": budget})
    sp = await serve_process(None, config=cfg, store="memory")
    client = sp.client()
    assert (await client.get_runtime()).limits.max_memory_bytes == budget
    wid = (await client.create_worker(profile="echo")).worker.worker_id
    before = await settled_rss(sp)
    text = "m" * 500_000
    sent = 0
    err: MemoryBudgetExceeded | None = None
    for _ in range(200):  # 100 MB asked for, and as much again in answers
        try:
            accepted = await client.send_input(wid, text)
        except MemoryBudgetExceeded as exc:
            err = exc
            break
        await finished(client, accepted.run.run_id)
        sent += 1
    assert err is not None, "the budget never refused anything"
    assert err.code.value == "RESOURCE_EXHAUSTED"
    assert err.reason == "MEMORY_BUDGET_EXCEEDED"
    assert (err.limit, err.needed) == (budget, 500_049 + 700)
    assert "memory budget" in err.message
    held = await settled_rss(sp)
    print(f"\nmemory store: {sent} inputs of 500 kB; RSS {before / MB:.0f} -> {held / MB:.0f} MB")
    assert 5 <= sent <= 40
    assert held - before < budget + 40 * MB
    # The transcript is whole: it is the memory store's data.
    assert (await client.get_transcript(wid)).total_size == 2 * sent
    full = (await client.get_runtime()).memory_bytes
    assert budget - 500_049 - 700 < full
    await client.delete_worker(wid)
    assert (await client.get_runtime()).memory_bytes < full - sent * 500_000  # room again
    other = (await client.create_worker(profile="echo")).worker.worker_id
    again = await client.send_input(other, text)
    await finished(client, again.run.run_id)
