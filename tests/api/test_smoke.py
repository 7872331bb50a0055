"""One end-to-end pass through the real server with the real client: create, send, stream, done."""

from __future__ import annotations

from runtime_client import RunFinished, RunState, RuntimeClient, TextDelta


async def test_send_input_streams_the_answer_and_finishes(client: RuntimeClient) -> None:
    created = await client.create_worker(profile="echo", display_name="smoke")
    worker_id = created.worker.worker_id
    accepted = await client.send_input(worker_id, "hello brave new world")
    text = []
    async for event in client.subscribe(worker_id=worker_id, after_seq=accepted.seq):
        if isinstance(event.payload, TextDelta):
            text.append(event.payload.text)
        if isinstance(event.payload, RunFinished):
            assert event.payload.run.state is RunState.COMPLETED
            break
    assert "".join(text) == "hello brave new world"
    transcript = await client.get_transcript(worker_id)
    assert [e.message.text for e in transcript.items] == ["hello brave new world"] * 2
