"""Issue 7 item 9: the typed client's unary calls ride through a Runtime restart. A real ``serve``
is stopped (SIGTERM: it drains, answering RUNTIME_DRAINING, then goes away) and started again on
the same port and data dir while one client keeps calling, 50 ms apart: reads and SendInput
with a request_id all succeed, none raises Unavailable (without retries, several do)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from serving import ServeProcessFactory, eventually, unassigned_port

from runtime_client import BusyPolicy, RetryPolicy, RuntimeClient

BOUND = 120.0  # seconds: a safety net on a shared 2-core machine, not a speed assertion
# A budget that outlasts a serve start-up on a loaded machine; the default is 15 s.
PATIENT = RetryPolicy(budget_s=90.0, max_attempts=1_000)


async def test_unary_calls_50ms_apart_all_succeed_across_a_restart(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    port = unassigned_port()  # not an ephemeral one: see its docstring
    listen = ["--listen", f"127.0.0.1:{port}"]
    data = tmp_path / "data"
    first = await serve_process(data, extra=listen)
    assert first.port == port
    client = RuntimeClient(first.target, retry=PATIENT, timeout=BOUND)
    try:
        worker = (await client.create_worker(request_id="the-worker")).worker.worker_id
        calls: list[tuple[str, float]] = []  # (call, started_at of the process that answered)
        failures: list[BaseException] = []

        async def caller() -> None:
            n = 0
            while True:
                n += 1
                kind = ("runtime", "worker", "list", "send", "events", "usage")[n % 6]
                try:
                    if kind == "runtime":
                        started = (await client.get_runtime()).started_at
                        calls.append((kind, started))
                    elif kind == "worker":
                        assert (await client.get_worker(worker)).worker_id == worker
                    elif kind == "list":
                        assert (await client.list_workers()).total_size == 1
                    elif kind == "send":
                        await client.send_input(
                            worker, f"input {n}", request_id=f"r{n}", busy_policy=BusyPolicy.ENQUEUE
                        )
                    elif kind == "events":
                        await client.list_events(worker_id=worker, page_size=10)
                    else:
                        await client.get_usage(worker)
                    calls.append((kind, 0.0))
                except Exception as exc:  # every failure is a test failure: collect, go on
                    failures.append(exc)
                await asyncio.sleep(0.05)

        task = asyncio.create_task(caller())
        try:
            await eventually(lambda: len(calls) >= 20, within=BOUND, what="20 calls before")
            before = len(calls)
            assert await asyncio.to_thread(first.terminate) == 0
            second = await serve_process(data, extra=listen)
            assert second.port == port
            await eventually(
                lambda: (
                    len({s for k, s in calls if k == "runtime" and s}) >= 2
                    and len(calls) >= before + 40
                ),
                within=BOUND,
                what="calls answered by the restarted server",
            )
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        assert failures == [], failures[:3]
        # both processes answered: the calls really spanned the restart
        assert len({s for k, s in calls if k == "runtime" and s}) == 2
        assert (await client.get_worker(worker)).worker_id == worker
    finally:
        await client.close()
