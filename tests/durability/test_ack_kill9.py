"""An acknowledged input survives a ``kill -9`` that comes right after its acknowledgement (API.md
guarantee 3): the acknowledgement is sent only after its commit, and the seq high-water mark
(``runtime_server.store._integrity``) already covers its seq,
so the restarted process finds the input and accepts its own log.

The kill comes the moment the last acknowledgement arrives, while the runs those inputs started
are still writing (the echo agent answers at once): whatever those runs had not committed yet is
lost with the process, and the restart must still hold every acknowledged input.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from serving import ServeProcessFactory

from runtime_client import Role, RunState

WORKERS = 8
ROUNDS = 3


async def test_inputs_acknowledged_right_before_kill9_are_kept(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    mark = data / "runtime.sqlite3.hwm"
    workers: list[str] = []
    acked: dict[str, list[tuple[str, str, int]]] = {}  # worker -> (run id, text, seq) acked
    for round_ in range(ROUNDS):
        sp = await serve_process(data)
        client = sp.client()
        if not workers:
            created = await asyncio.gather(
                *(client.create_worker(profile="echo") for _ in range(WORKERS))
            )
            workers = [c.worker.worker_id for c in created]
        texts = {w: f"round {round_} input of worker {i}" for i, w in enumerate(workers)}
        accepted = await asyncio.gather(*(client.send_input(w, t) for w, t in texts.items()))
        sp.kill9()  # at once: the runs those inputs started are still being written
        for w, a in zip(workers, accepted, strict=True):
            acked.setdefault(w, []).append((a.run.run_id, texts[w], a.seq))
        # The mark covers every acknowledged seq (it goes up before a seq is reported).
        assert int(mark.read_bytes()) >= max(a.seq for a in accepted)

    sp = await serve_process(data)  # the start-up checks accept the log and its mark
    client = sp.client()
    head = (await client.get_runtime()).last_seq
    assert head >= max(seq for runs in acked.values() for _, _, seq in runs)
    for w, runs in acked.items():
        transcript = [e async for e in client.iter_transcript(w)]
        inputs = [e.message.text for e in transcript if e.message.role is Role.USER]
        assert inputs == [t for _, t, _ in runs], w
        for run_id, _, _ in runs:
            run = await client.get_run(run_id)
            assert run.state in (RunState.COMPLETED, RunState.INTERRUPTED)
    # and the recovered workers take new input
    fresh = await client.send_input(workers[0], "after the crashes")
    assert (await client.wait_run(fresh.run.run_id, timeout=30)).state is RunState.COMPLETED
    assert sp.terminate() == 0
