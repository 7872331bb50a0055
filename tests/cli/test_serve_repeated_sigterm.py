"""A SIGTERM repeated while ``serve`` shuts down does not kill it: the exit stays clean (0)."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import TYPE_CHECKING

from runtime_client import RuntimeClient

if TYPE_CHECKING:
    from serving import SpawnServer


async def test_repeated_sigterm_during_shutdown_still_exits_zero(
    spawn_server: SpawnServer,
) -> None:
    server = await spawn_server("--grace", "0.5")
    async with RuntimeClient(server.target) as client:
        worker = (await client.create_worker(profile="echo")).worker
        await client.send_input(worker.worker_id, "hello")
    server.proc.send_signal(signal.SIGTERM)
    # keep signalling through the whole shutdown, the loop's close and the interpreter's exit
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 30.0
    while server.proc.returncode is None and loop.time() < deadline:
        try:  # os.kill, not send_signal: Popen.send_signal polls, reaping the child behind
            os.kill(server.proc.pid, signal.SIGTERM)  # asyncio's watcher (rc 255)
        except ProcessLookupError:
            break
        await asyncio.sleep(0.005)
    rc = await asyncio.wait_for(server.proc.wait(), 30.0)
    assert rc == 0, server.stderr()
    assert server.stdout().rstrip().endswith("stopped")
