"""The per-profile context policy through the real gRPC server and client, a real SQLite file and
an OpenAI-compatible provider over real HTTP on loopback (issue 14 item 8):

- ``context_max_tokens`` / ``context_max_messages`` / ``context_compaction`` are profile keys,
  reported by ListProfiles (with their defaults), and checked, naming the key;
- each request carries only the policy's window (the system prompt always), while the transcript
  stays complete — also after a restart, when the window is read back from the store;
- the Runtime's incremental window equals a fresh selection, also while windows are evicted;
- a provider's context-length error trims harder and succeeds on the one retry (a diagnostic says
  so); a second one fails the run with CONTEXT_LENGTH_EXCEEDED naming the budget.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import engine
from engine.testing import LoopbackServer, RecordedRequest, Reply
from runtime_client import RunState
from runtime_server.model import Limits
from runtime_server.runtime import ConfigError, parse_config
from runtime_server.store import SqliteStore

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0  # seconds: a safety net only

TOO_LONG = {
    "error": {
        "message": "This model's maximum context length is 4096 tokens. However, your messages "
        "resulted in 5000 tokens. Please reduce the length of the messages.",
        "type": "invalid_request_error",
        "param": "messages",
        "code": "context_length_exceeded",
    }
}


def chat(text: str) -> bytes:
    chunks = [
        {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
        {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    ]
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def echo_last(request: RecordedRequest) -> Reply:
    """The provider answers with the last thing it was sent, so answers differ run to run."""
    return Reply(body=chat("re: " + request.json()["messages"][-1]["content"]))


def config(url: str, **profile: Any) -> dict[str, Any]:
    return {
        "providers": {"loop": {"kind": "openai_chat", "base_url": url + "/v1", "max_retries": 0}},
        "profiles": {
            "small": {"provider": "loop", "model": "m", "system_prompt": "be brief", **profile},
            "plain": {"provider": "loop", "model": "m"},
        },
    }


def conversation(request: RecordedRequest) -> list[dict[str, Any]]:
    return [m for m in request.json()["messages"] if m["role"] != "system"]


async def test_profile_keys_are_reported_with_their_defaults(serve: ServeFactory) -> None:
    cfg = config("http://127.0.0.1:9", context_max_tokens=500, context_max_messages=8)
    client = (await serve(config=cfg)).client
    profiles = {p.name: p for p in await client.list_profiles()}
    assert profiles["small"].context_max_tokens == 500
    assert profiles["small"].context_max_messages == 8
    assert profiles["small"].context_compaction == "none"
    for name in ("plain", "echo"):  # the documented defaults
        assert profiles[name].context_max_tokens == engine.DEFAULT_MAX_TOKENS == 24_000
        assert profiles[name].context_max_messages == 0
        assert profiles[name].context_compaction == "none"


@pytest.mark.parametrize(
    ("key", "value", "why"),
    [
        ("context_max_tokens", -1, "must be >= 0"),
        ("context_max_messages", 1.5, "wrong type"),
        ("context_compaction", "forget", "must be one of"),
        ("context_compaction", "summarize", "not implemented yet"),
    ],
)
def test_bad_policy_keys_are_named(key: str, value: Any, why: str) -> None:
    with pytest.raises(ConfigError, match=rf"profiles\.small\.{key}: .*{why}"):
        parse_config(config("http://127.0.0.1:9", **{key: value}))


async def test_requests_carry_the_window_and_the_transcript_stays_whole(
    serve: ServeFactory, tmp_path: Path
) -> None:
    path = tmp_path / "rt.sqlite3"
    runs = 8
    async with LoopbackServer(default=echo_last) as provider:
        cfg = config(provider.url, context_max_messages=5)
        served = await serve(config=cfg, store=SqliteStore(path))
        client = served.client
        wid = (await client.create_worker(profile="small")).worker.worker_id
        for j in range(runs):
            accepted = await client.send_input(wid, f"input {j}")
            run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
            assert run.state is RunState.COMPLETED, run.error
        for j, request in enumerate(provider.requests):
            assert request.json()["messages"][0] == {"role": "system", "content": "be brief"}
            sent = conversation(request)
            assert sent[-1] == {"role": "user", "content": f"input {j}"}
            assert sent[0]["role"] == "user"  # whole turns only
            assert len(sent) == min(2 * j + 1, 5)  # 2 turns and the input, at most
        page = await client.get_transcript(wid, page_size=100)
        assert page.total_size == 2 * runs  # nothing was cut from the transcript
        assert [e.message.text for e in page.items][:2] == ["input 0", "re: input 0"]

        # A restart: the window is read back from the store, and only the window is sent.
        await served.server.stop(0)
        served = await serve(config=cfg, store=SqliteStore(path))
        accepted = await served.client.send_input(wid, "after restart")
        run = await served.client.wait_run(accepted.run.run_id, timeout=BOUND)
        assert run.state is RunState.COMPLETED, run.error
    sent = conversation(provider.requests[-1])
    assert [m["content"] for m in sent] == [
        f"input {runs - 2}",
        f"re: input {runs - 2}",
        f"input {runs - 1}",
        f"re: input {runs - 1}",
        "after restart",
    ]


async def test_a_context_length_error_is_trimmed_and_retried_once(
    serve: ServeFactory, tmp_path: Path
) -> None:
    async with LoopbackServer(default=echo_last) as provider:
        served = await serve(config=config(provider.url), store=SqliteStore(tmp_path / "rt.db"))
        client = served.client
        wid = (await client.create_worker(profile="small")).worker.worker_id
        for j in range(6):
            accepted = await client.send_input(wid, f"input {j} " + "word " * 50)
            await client.wait_run(accepted.run.run_id, timeout=BOUND)
        provider.push(Reply.json(400, TOO_LONG))
        accepted = await client.send_input(wid, "one more")
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
        assert run.state is RunState.COMPLETED, run.error
        refused, retried = provider.requests[-2:]
        assert 0 < len(conversation(retried)) < len(conversation(refused))
        assert conversation(retried)[-1]["content"] == "one more"
        codes = [d.code for d in (await client.list_diagnostics()).items]
        assert "context_trimmed" in codes

        provider.push(Reply.json(400, TOO_LONG), Reply.json(400, TOO_LONG))
        accepted = await client.send_input(wid, "and another")
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert run.error.code == "CONTEXT_LENGTH_EXCEEDED"
    assert "24,000 estimated tokens" in run.error.message  # the profile's budget, named
    page = await client.get_transcript(wid, page_size=100)
    assert page.items[-1].message.text == "and another"  # the input stays; nothing is lost


async def test_the_incremental_window_matches_a_fresh_selection_under_eviction(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """Windows small enough that the workers keep evicting each other: the Runtime's running fit
    is dropped and rebuilt from the store again and again, and every request must still carry
    exactly what :func:`engine.select` picks from the whole history."""
    small = replace(Limits(), transcript_window_bytes=3_000, transcript_cache_bytes=6_000)
    policy = engine.ContextPolicy(max_tokens=90)
    async with LoopbackServer(default=echo_last) as provider:
        cfg = config(provider.url, context_max_tokens=policy.max_tokens)
        served = await serve(config=cfg, limits=small, store=SqliteStore(tmp_path / "rt.db"))
        client = served.client
        workers = [(await client.create_worker(profile="small")).worker.worker_id for _ in range(3)]
        mirrors: dict[str, list[engine.Message]] = {wid: [] for wid in workers}
        for j in range(10):
            for n, wid in enumerate(workers):
                text = f"w{n} run{j} " + "pad " * (j % 4) * 5
                mirror = mirrors[wid]
                mirror.append(engine.Message(engine.Role.USER, text))
                accepted = await client.send_input(wid, text)
                run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
                assert run.state is RunState.COMPLETED, run.error
                expected = [m.text for m in engine.select(mirror, policy).of(mirror)]
                assert [m["content"] for m in conversation(provider.requests[-1])] == expected
                mirror.append(engine.Message(engine.Role.ASSISTANT, "re: " + text))
