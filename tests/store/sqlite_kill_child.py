"""Child process of the kill -9 test: writes events to a SqliteStore as fast as it can and prints
every seq the commit listener reports, one per line, flushed at once. The parent kills it mid-stream
and checks that every printed seq survived.

Usage: python sqlite_kill_child.py DB_PATH
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from runtime_server.model import Event, TextDelta, Worker, WorkerState
from runtime_server.store import PutWorker, SqliteStore


def report(seq: int) -> None:
    sys.stdout.write(f"{seq}\n")
    sys.stdout.flush()


async def main(path: Path) -> None:
    store = SqliteStore(path, durability="process")
    state = await store.open("rt-child")
    store.set_commit_listener(report)
    seq = state.last_seq
    worker = Worker("w-child", state.runtime_id, WorkerState.IDLE, "echo")
    store.write([], [PutWorker(worker)])
    print("ready", flush=True)
    while True:  # until killed
        for _ in range(5):
            seq += 1
            store.write([Event(seq, float(seq), "w-child", "r1", TextDelta(f"delta {seq}"))])
        await asyncio.sleep(0.0005)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
