"""Child process of the chunk kill -9 test: writes the events of three workers, interleaved one
by one, to a SqliteStore (so each transaction is several event chunks, one per worker, whose
seq ranges overlap) as fast as it can, and prints every seq the commit listener reports, one per
line, flushed at once. The parent kills it mid-stream.

Usage: python sqlite_chunks_kill_child.py DB_PATH
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from runtime_server.model import Event, TextDelta
from runtime_server.store import SqliteStore


def report(seq: int) -> None:
    sys.stdout.write(f"{seq}\n")
    sys.stdout.flush()


async def main(path: Path) -> None:
    store = SqliteStore(path, durability="process")
    state = await store.open("rt-child")
    store.set_commit_listener(report)
    seq = state.last_seq
    print("ready", flush=True)
    while True:  # until killed
        for _ in range(7):
            seq += 1
            store.write(
                [Event(seq, float(seq), f"w{seq % 3}", f"r{seq // 10}", TextDelta(f"{seq}"))]
            )
        await asyncio.sleep(0.0005)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
