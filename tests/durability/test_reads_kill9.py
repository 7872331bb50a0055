"""What a read showed survives a ``kill -9`` that comes right after it (runtime._settle).

A client polls GetWorker until its worker is IDLE again after a run, and the server is killed the
moment the first client sees that. GetWorker used to answer from memory, where the run ends a
moment before the store commits its RunFinished; with ``--durability power`` every commit waits
for an fsync, which holds that moment open: a client could see IDLE, the kill land before the
commit, and the restarted server bring the run back INTERRUPTED. Now a read answers once what it
shows is committed, so the run the client saw end is COMPLETED after the restart, every round.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from serving import ServeProcessFactory

from runtime_client import RunState, RuntimeClient, WorkerNotFound, WorkerState

WORKERS = 6
ROUNDS = 4
BOUND = 60.0  # a safety net on a shared machine, never a speed assertion


async def test_a_worker_seen_idle_after_its_run_keeps_the_run_through_kill9(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    workers: list[str] = []
    seen: list[tuple[str, str]] = []  # (worker, run) a client saw end, before a kill
    for round_ in range(ROUNDS):
        sp = await serve_process(data, durability="power")
        client = sp.client()
        if not workers:
            created = await asyncio.gather(
                *(client.create_worker(profile="echo") for _ in range(WORKERS))
            )
            workers = [c.worker.worker_id for c in created]

        async def until_idle(client: RuntimeClient, wid: str, text: str) -> tuple[str, str]:
            run_id = (await client.send_input(wid, text)).run.run_id
            while True:  # as fast as the server answers: the kill follows the first IDLE seen
                worker = await client.get_worker(wid)
                if worker.state is WorkerState.IDLE:
                    assert worker.usage.output_tokens > 0  # (its usage with it)
                    return wid, run_id

        tasks = [
            asyncio.ensure_future(until_idle(client, w, f"round {round_} worker {i} says hello"))
            for i, w in enumerate(workers)
        ]
        try:
            done, _ = await asyncio.wait(tasks, timeout=BOUND, return_when=asyncio.FIRST_COMPLETED)
            sp.kill9()
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        assert done, "no worker became idle"
        seen += [t.result() for t in done]

    sp = await serve_process(data)
    client = sp.client()
    for wid, run_id in seen:
        run = await client.get_run(run_id)
        assert run.state is RunState.COMPLETED, (run_id, run.state, run.error)
        assert run.worker_id == wid


async def test_a_worker_seen_deleted_stays_deleted_through_kill9(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    """One client deletes a worker while another polls GetWorker; the server is killed the
    moment the poller sees NOT_FOUND (maybe before the deleter's acknowledgement): after the
    restart the worker must still be gone, and the workers kept must all be there."""
    data = tmp_path / "data"
    kept: list[str] = []
    gone: list[str] = []
    for _ in range(ROUNDS):
        sp = await serve_process(data, durability="power")
        deleter, poller = sp.client(), sp.client()
        created = await asyncio.gather(
            *(deleter.create_worker(profile="echo") for _ in range(WORKERS))
        )
        ids = [c.worker.worker_id for c in created]
        victim, kept_now = ids[0], ids[1:]
        await asyncio.gather(*(deleter.send_input(w, "keep this") for w in kept_now))

        async def until_gone(poller: RuntimeClient, wid: str) -> None:
            while True:
                try:
                    await poller.get_worker(wid)
                except WorkerNotFound:
                    return

        deleting = asyncio.ensure_future(deleter.delete_worker(victim))
        try:
            await asyncio.wait_for(until_gone(poller, victim), BOUND)
            sp.kill9()
        finally:
            deleting.cancel()
            await asyncio.gather(deleting, return_exceptions=True)
        gone.append(victim)
        kept += kept_now

    sp = await serve_process(data)
    client = sp.client()
    for wid in gone:
        with pytest.raises(WorkerNotFound):
            await client.get_worker(wid)
    listed = {w.worker_id async for w in client.iter_workers()}
    assert listed == set(kept)
