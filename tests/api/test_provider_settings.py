"""Provider settings of issue 14 through the real gRPC server and client: the request deadline is
reported by ListProfiles and ends a keep-alive-only stream with PROVIDER_TIMEOUT; an
``openai_responses`` provider runs; reasoning goes back to an ``openai_chat`` provider in the field
it came in, across runs of one worker; config errors name the key."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from engine.testing import LoopbackServer, Reply
from runtime_client import RunState
from runtime_server.runtime import ConfigError, parse_config

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 30.0  # seconds: a safety net only


def chat(*deltas: dict[str, Any], finish: str = "stop") -> bytes:
    chunks: list[dict[str, Any]] = [
        {"choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas
    ]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": finish}]})
    chunks.append({"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}})
    return b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in chunks) + b"data: [DONE]\n\n"


def responses_text(text: str) -> bytes:
    events: list[dict[str, Any]] = [
        {"type": "response.created", "response": {"status": "in_progress", "output": []}},
        {"type": "response.output_item.added", "output_index": 0,
         "item": {"type": "message", "id": "m1", "role": "assistant", "content": []}},
        {"type": "response.output_text.delta", "output_index": 0, "content_index": 0,
         "item_id": "m1", "delta": text},
        {"type": "response.completed", "response": {"status": "completed", "output": [],
         "usage": {"input_tokens": 4, "output_tokens": 1, "total_tokens": 5}}},
    ]  # fmt: skip
    return b"".join(f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in events)


async def test_deadline_is_reported_and_ends_a_keep_alive_only_stream(
    serve: ServeFactory,
) -> None:
    keep_alives = Reply(body=b": keep-alive\n\n" * 4000, chunk_sizes=(14,), chunk_delay_s=0.05,
                        then="hang")  # fmt: skip
    async with LoopbackServer(default=keep_alives) as provider:
        config = {
            "providers": {"loop": {"kind": "openai_chat", "base_url": provider.url + "/v1",
                                   "timeout_s": 60, "max_retries": 2}},
            "profiles": {"strict": {"provider": "loop", "model": "m", "request_deadline_s": 0.5},
                         "lenient": {"provider": "loop", "model": "m"}},
        }  # fmt: skip
        client = (await serve(config=config)).client
        profiles = {p.name: p for p in await client.list_profiles()}
        assert profiles["strict"].request_deadline_s == 0.5
        assert profiles["lenient"].request_deadline_s == 600.0  # the default

        worker = (await client.create_worker(profile="strict")).worker
        accepted = await client.send_input(worker.worker_id, "hello")
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert run.state is RunState.FAILED
    assert run.error is not None
    assert run.error.code == "PROVIDER_TIMEOUT"
    assert "deadline" in run.error.message
    assert len(provider.requests) == 1  # not retried, though max_retries allows it


async def test_openai_responses_provider_runs(serve: ServeFactory) -> None:
    async with LoopbackServer([Reply(body=responses_text("Hello from Responses"))]) as provider:
        config = {
            "providers": {"oai": {"kind": "openai_responses", "base_url": provider.url + "/v1"}},
            "profiles": {"new": {"provider": "oai", "model": "gpt-x", "system_prompt": "terse"}},
        }
        client = (await serve(config=config)).client
        [profile] = [p for p in await client.list_profiles() if p.name == "new"]
        assert profile.provider_kind == "openai_responses"
        worker = (await client.create_worker(profile="new")).worker
        accepted = await client.send_input(worker.worker_id, "hi")
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert run.state is RunState.COMPLETED
    [request] = provider.requests
    assert request.path == "/v1/responses"
    body = request.json()
    assert body["instructions"] == "terse"
    assert body["input"] == [{"role": "user", "content": "hi"}]
    transcript = await client.get_transcript(worker.worker_id)
    assert transcript.items[-1].message.text == "Hello from Responses"


@pytest.mark.parametrize(("configured", "sent"), [
    (None, "reasoning"),  # auto: the field Groq used
    ("reasoning_content", "reasoning_content"),
    ("none", None),
])  # fmt: skip
async def test_reasoning_goes_back_across_runs(
    serve: ServeFactory, configured: str | None, sent: str | None
) -> None:
    first = Reply(body=chat({"role": "assistant", "reasoning": "Greeting."}, {"content": "Hi!"}))
    second = Reply(body=chat({"content": "Bye!"}))
    async with LoopbackServer([first, second]) as provider:
        groq: dict[str, Any] = {"kind": "openai_chat", "base_url": provider.url + "/v1"}
        if configured:
            groq["reasoning_field"] = configured
        config = {
            "providers": {"groq": groq},
            "profiles": {"g": {"provider": "groq", "model": "m"}},
        }
        client = (await serve(config=config)).client
        worker = (await client.create_worker(profile="g")).worker
        for text in ("hello", "bye"):
            accepted = await client.send_input(worker.worker_id, text)
            run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
            assert run.state is RunState.COMPLETED
    [assistant] = [m for m in provider.requests[1].json()["messages"] if m["role"] == "assistant"]
    fields = {"reasoning", "reasoning_content", "reasoning_details"} & set(assistant)
    assert fields == ({sent} if sent else set())
    if sent:
        assert assistant[sent] == "Greeting."


@pytest.mark.parametrize(("provider", "profile", "key"), [
    ({"kind": "openai_chat", "base_url": "http://x/v1", "reasoning_field": "thoughts"}, {},
     "providers.p.reasoning_field"),
    ({"kind": "anthropic", "reasoning_field": "reasoning"}, {}, "providers.p.reasoning_field"),
    ({"kind": "openai_chat", "base_url": "http://x/v1"}, {"request_deadline_s": 0},
     "profiles.q.request_deadline_s"),
    ({"kind": "openai_responses", "local_model": "smollm2"}, {}, "providers.p.local_model"),
])  # fmt: skip
def test_config_errors_name_the_key(
    provider: dict[str, Any], profile: dict[str, Any], key: str
) -> None:
    config = {"providers": {"p": provider}, "profiles": {"q": {"provider": "p", "model": "m",
                                                               **profile}}}  # fmt: skip
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        parse_config(config)
