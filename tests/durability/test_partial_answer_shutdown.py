"""A graceful shutdown keeps the partial answer of the run it interrupts (issue 8 item 7): SIGTERM
to a real SQLite ``serve`` process mid-stream, then a restart on the same data dir, shows the
answer so far as an incomplete assistant entry with stop reason ``interrupted``, committed before
the run's RunFinished(INTERRUPTED), with the prompt's usage counted. (After ``kill -9`` the partial
answer is not known: only the run's state is recovered — see test_restart.)"""

from __future__ import annotations

from pathlib import Path

from serving import ServeProcessFactory, all_events, eventually, write_config

from runtime_client import MessageCommitted, Role, RunFinished, RunState, TextDelta

WORDS = " ".join(f"w{i}" for i in range(200))  # 100 s at 500 ms a word: cut long before its end


async def test_sigterm_mid_stream_commits_the_partial_answer_as_interrupted(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "cfg.toml", delay_ms=500)
    sp = await serve_process(data, config=config, extra=("--grace", "0"))
    client = sp.client()
    wid = (await client.create_worker(profile="slow")).worker.worker_id
    accepted = await client.send_input(wid, WORDS)

    async def streamed_twice() -> bool:
        page = await client.list_events(after_seq=accepted.seq, worker_id=wid)
        return sum(isinstance(e.payload, TextDelta) for e in page.events) >= 2

    await eventually(streamed_twice, what="two words streamed")
    assert sp.terminate() == 0

    sp = await serve_process(data, config=config)
    client = sp.client()
    run = await client.get_run(accepted.run.run_id)
    assert run.state is RunState.INTERRUPTED
    assert run.usage.input_tokens == 200  # the echo reports the prompt before the first word
    entries = [e async for e in client.iter_transcript(wid)]
    assert [e.message.role for e in entries] == [Role.USER, Role.ASSISTANT]
    partial = entries[1].message
    assert (partial.incomplete, partial.stop_reason) == (True, "interrupted")
    events = [e for e in await all_events(client) if e.run_id == accepted.run.run_id]
    streamed = "".join(e.payload.text for e in events if isinstance(e.payload, TextDelta))
    assert partial.text == streamed
    assert WORDS.startswith(partial.text)
    kinds = [type(e.payload) for e in events]
    assert kinds.index(MessageCommitted) < kinds.index(RunFinished)
    assert kinds.count(RunFinished) == 1
