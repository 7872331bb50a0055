"""Issue 13 items 1, 3 and 4 with real ``serve`` processes on a real SQLite file: bundles (and
their versions) survive kill -9, and a worker created from a bundle keeps working from its profile
snapshot even after the bundle's row is removed from the database behind the runtime's back."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from serving import ServeProcessFactory

from engine.testing import LoopbackServer, RecordedRequest, Reply
from runtime_client import (
    ConfigBundleNotFound,
    ConfigBundleRef,
    DigestMismatch,
    RunState,
    RuntimeClient,
)

BOUND = 60.0  # a safety net on a shared machine, never a speed assertion

BUNDLE = b"""\
[prompts]
terse = "Bundle prompt: be terse."

[profiles.helper]
provider = "loop"
model = "bundled-model"
prompt = "terse"
"""


def _answer_with_system_prompt(request: RecordedRequest) -> Reply:
    messages = request.json()["messages"]
    system = next((m["content"] for m in messages if m["role"] == "system"), "<none>")
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": system}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    body = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"
    return Reply(body=body)


async def _answer(client: RuntimeClient, worker_id: str) -> str:
    accepted = await client.send_input(worker_id, "hello")
    run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert run.state is RunState.COMPLETED, run.error
    return (await client.get_transcript(worker_id)).items[-1].message.text


async def test_bundles_survive_kill_9_and_workers_never_need_them_again(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    data = tmp_path / "data"
    async with LoopbackServer(default=_answer_with_system_prompt) as provider:
        config = tmp_path / "serve.toml"
        config.write_text(
            f'[providers.loop]\nkind = "openai_chat"\nbase_url = "{provider.url}/v1"\n'
            "max_retries = 0\n",
            encoding="utf-8",
        )
        sp = await serve_process(data, config=config)
        client = sp.client()
        put = await client.put_bundle("team", BUNDLE)
        ref = ConfigBundleRef("team", put.bundle.digest)
        first = (await client.create_worker(profile="helper", config_bundle=ref)).worker
        assert await _answer(client, first.worker_id) == "Bundle prompt: be terse."
        assert provider.requests[-1].json()["model"] == "bundled-model"

        sp.kill9()
        sp = await serve_process(data, config=config)
        client = sp.client()
        # the bundle is still there: a second create with the same ref needs no new put
        assert (await client.get_bundle("team", ref.digest, include_content=True)).content == BUNDLE
        second = (await client.create_worker(profile="helper", config_bundle=ref)).worker
        assert await _answer(client, second.worker_id) == "Bundle prompt: be terse."
        assert (await client.put_bundle("team", BUNDLE)).created is False
        # a second version under the same id; a wrong expected digest changes nothing
        v2 = BUNDLE.replace(b"be terse", b"be brief")
        with pytest.raises(DigestMismatch) as mismatch:
            await client.put_bundle("team", v2, expected_digest=ref.digest)
        assert mismatch.value.computed_digest != ref.digest
        assert (await client.put_bundle("team", v2)).created

        # snapshot independence: the bundle's row goes, behind the runtime's back
        sp.kill9()
        with sqlite3.connect(data / "runtime.sqlite3") as conn:
            removed = conn.execute("DELETE FROM config_bundles WHERE digest = ?", (ref.digest,))
            assert removed.rowcount == 1
        conn.close()
        sp = await serve_process(data, config=config)
        client = sp.client()
        with pytest.raises(ConfigBundleNotFound):
            await client.get_bundle("team", ref.digest)
        listed = (await client.list_bundles(id="team")).items
        assert [b.digest for b in listed] == [mismatch.value.computed_digest]
        # both workers still run with their resolved profiles (recovered from the snapshot)
        assert await _answer(client, first.worker_id) == "Bundle prompt: be terse."
        assert await _answer(client, second.worker_id) == "Bundle prompt: be terse."
        # ... while a new create needs the bundle, and says so
        with pytest.raises(ConfigBundleNotFound):
            await client.create_worker(profile="helper", config_bundle=ref)
        # deleting a worker drops its snapshot with it; the other keeps working
        await client.delete_worker(first.worker_id)
        sp.kill9()
        sp = await serve_process(data, config=config)
        client = sp.client()
        assert await _answer(client, second.worker_id) == "Bundle prompt: be terse."
        with sqlite3.connect(data / "runtime.sqlite3") as conn:
            rows = conn.execute("SELECT worker_id FROM worker_profiles").fetchall()
        conn.close()
        assert rows == [(second.worker_id,)]
