"""After a restart, a worker's long history is in the SQLite file, not in memory. Its next run must
read back only what the context policy sends — not the whole transcript, which the Runtime used to
read (and, when it fit the transcript window, keep) at every run start (issue 14 item 8).

The history is written through :class:`SqliteStore` directly (2,000 entries of 1,000 characters,
~2 MB); the Runtime is then started on the file behind the real gRPC server. Observed through the
API: the run's prompt (the echo provider reports its word count as input tokens) and the Runtime's
``memory_bytes``, which counts the transcript windows it holds.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from engine import Message, Role
from runtime_client import RunState
from runtime_server import model
from runtime_server.model import Run, TranscriptEntry, Worker, WorkerState
from runtime_server.store import AppendTranscript, PutRun, PutWorker, SqliteStore

if TYPE_CHECKING:
    from serving import ServeFactory

ENTRIES = 2_000
WORDS = 200  # per entry: "word " * 200 = 1,000 characters


async def write_history(path: Path, profile: str) -> str:
    store = SqliteStore(path)
    await store.open("t-context")
    wid, rid, now = str(uuid.uuid4()), str(uuid.uuid4()), time.time()
    worker = Worker(
        worker_id=wid, runtime_id="t-context", state=WorkerState.IDLE, profile=profile,
        created_at=now,
    )  # fmt: skip
    mutations: list[PutWorker | PutRun | AppendTranscript] = [
        PutWorker(worker),
        PutRun(Run(run_id=rid, worker_id=wid, state=model.RunState.COMPLETED, created_at=now)),
    ]
    for i in range(ENTRIES):
        role = Role.USER if i % 2 == 0 else Role.ASSISTANT
        message = Message(role, "word " * WORDS)
        entry = TranscriptEntry(worker_id=wid, index=i, run_id=rid, created_at=now, message=message)
        mutations.append(AppendTranscript(entry))
    store.write([], mutations)
    await store.close()
    return wid


async def test_a_restarted_worker_reads_back_only_its_window(
    serve: ServeFactory, tmp_path: Path
) -> None:
    path = tmp_path / "rt.sqlite3"
    wid = await write_history(path, "windowed")
    config = {"profiles": {"windowed": {"provider": "builtin", "context_max_messages": 4}}}
    served = await serve(config=config, store=SqliteStore(path))
    client = served.client
    before = (await client.get_runtime()).memory_bytes

    accepted = await client.send_input(wid, "hello there")
    run = await client.wait_run(accepted.run.run_id, timeout=30)
    assert run.state is RunState.COMPLETED, run.error
    # Two whole turns fit in 4 messages, then the input: [user, assistant, "hello there"].
    assert run.usage.input_tokens == 2 * WORDS + 2
    grown = (await client.get_runtime()).memory_bytes - before
    # The whole history is over 2 MB; the first read-back is 256 entries (~256 KB).
    assert grown < 600_000, f"the run start kept {grown:,} bytes of history in memory"

    # The transcript is still whole, and served from the store.
    page = await client.get_transcript(wid, page_size=5)
    assert page.total_size == ENTRIES + 2
    assert page.items[0].message.text == "word " * WORDS
