"""Faults at the HTTP boundary, from a real local server: statuses, Retry-After, resets, malformed
and hanging streams, mid-stream error events, cancellation, API keys."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest

from engine import (
    AnthropicProvider,
    ConfigurationError,
    Message,
    ModelRequest,
    Notice,
    OpenAIChatProvider,
    PartialDiscarded,
    ProviderConnectionError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderStreamError,
    RetryPolicy,
    Role,
    StopReason,
    TextDelta,
    TurnConfig,
    TurnEvent,
    backoff_delay,
    make_provider,
    run_turn,
    stream_with_retry,
)
from engine.testing import EventRecorder, LoopbackServer, Reply
from engine.wire import parse_retry_after

FAST = RetryPolicy(initial_backoff_s=0.001, max_backoff_s=0.01, max_stream_restarts=1)
HISTORY = (Message(Role.USER, "hi"),)
BOUND = 10  # seconds: a safety net only, never a speed assertion


def sse(*payloads: Any, event: str | None = None) -> bytes:
    out = b""
    for payload in payloads:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        prefix = f"event: {event}\n" if event else ""
        out += f"{prefix}data: {data}\n\n".encode()
    return out


def chunk(content: str | None = None, finish: str | None = None) -> dict[str, Any]:
    delta = {} if content is None else {"content": content}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}


OPENAI_OK = sse(
    chunk("Hello"), chunk(" world"), chunk(finish="stop"),
    {"choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 2}}, "[DONE]",
)  # fmt: skip


def anthropic_event(payload: dict[str, Any]) -> bytes:
    return sse(payload, event=payload["type"])


ANTHROPIC_START = anthropic_event(
    {"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}
) + anthropic_event(
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
)
ANTHROPIC_TEXT = anthropic_event(
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi!"}}
)
ANTHROPIC_END = (
    anthropic_event({"type": "content_block_stop", "index": 0})
    + anthropic_event(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 2},
        }
    )
    + anthropic_event({"type": "message_stop"})
)
ANTHROPIC_OK = ANTHROPIC_START + ANTHROPIC_TEXT + ANTHROPIC_END


async def turn(provider: Any, retry: RetryPolicy = FAST) -> tuple[Any, EventRecorder]:
    rec = EventRecorder()
    result = await asyncio.wait_for(
        run_turn(provider, TurnConfig(model="m", retry=retry), HISTORY, emit=rec), BOUND
    )
    return result, rec


async def test_429_with_retry_after_then_success(client: httpx.AsyncClient) -> None:
    limited = Reply.json(429, {"error": {"message": "slow down"}}, {"retry-after": "0"})
    async with LoopbackServer([limited, Reply(body=OPENAI_OK)]) as server:
        result, rec = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert result.messages[-1].text == "Hello world"
    assert len(server.requests) == 2
    retries = [e for e in rec if isinstance(e, Notice) and e.code == "provider_retry"]
    assert len(retries) == 1
    assert "slow down" in retries[0].message


async def test_retry_after_is_honoured_and_bounded(client: httpx.AsyncClient) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    limited = Reply.json(429, {"error": {"message": "later"}}, {"retry-after": "7"})
    async with LoopbackServer([limited, Reply(body=OPENAI_OK)]) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1")
        request = ModelRequest(model="m", messages=HISTORY)
        events = [e async for e in stream_with_retry(provider, request, FAST, sleep=fake_sleep)]
    assert slept == [7.0]  # never sooner than the server asked
    assert any(isinstance(e, TextDelta) for e in events)
    too_long = RetryPolicy(max_retry_after_s=5)
    assert backoff_delay(too_long, 1, retry_after=7) is None


def test_retry_after_formats_and_full_jitter() -> None:
    assert parse_retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "250"})) == 0.25
    date = "Wed, 21 Oct 2015 07:28:10 GMT"
    assert parse_retry_after(httpx.Headers({"retry-after": date}), now=1445412480.0) == 10.0
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    policy = RetryPolicy(initial_backoff_s=1, max_backoff_s=5)
    assert backoff_delay(policy, 3, rand=lambda: 1.0) == 4.0
    assert backoff_delay(policy, 10, rand=lambda: 1.0) == 5.0  # capped
    assert backoff_delay(policy, 3, rand=lambda: 0.0) == 0.0  # full jitter reaches zero


@pytest.mark.parametrize("status", [500, 503, 529, 408])
async def test_retryable_statuses_then_success(client: httpx.AsyncClient, status: int) -> None:
    failing = Reply.json(status, {"error": {"message": "oops"}})
    async with LoopbackServer([failing, failing, Reply(body=ANTHROPIC_OK)]) as server:
        result, _ = await turn(AnthropicProvider(client, server.url))
    assert result.messages[-1].text == "Hi!"
    assert len(server.requests) == 3


async def test_retries_are_bounded(client: httpx.AsyncClient) -> None:
    failing = Reply.json(503, {"error": {"message": "down"}})
    async with LoopbackServer(default=failing) as server:
        with pytest.raises(ProviderHTTPError) as info:
            await turn(OpenAIChatProvider(client, server.url + "/v1"), RetryPolicy(
                max_attempts=3, initial_backoff_s=0.001))  # fmt: skip
    assert info.value.status == 503
    assert info.value.retryable
    assert len(server.requests) == 3


async def test_client_errors_are_not_retried_and_carry_the_provider_message(
    client: httpx.AsyncClient,
) -> None:
    # llama.cpp answers /v1/messages errors with an OpenAI-shaped body
    body = {"error": {"code": 400, "message": "context too long", "type": "exceed_context"}}
    async with LoopbackServer([Reply.json(400, body)]) as server:
        with pytest.raises(ProviderHTTPError) as info:
            await turn(AnthropicProvider(client, server.url))
    assert info.value.status == 400
    assert not info.value.retryable
    assert "context too long" in info.value.message
    assert len(server.requests) == 1


async def test_reset_mid_stream_discards_the_partial_and_retries(
    client: httpx.AsyncClient,
) -> None:
    cut = Reply(body=OPENAI_OK[:150], then="reset")
    async with LoopbackServer([cut, Reply(body=OPENAI_OK)]) as server:
        result, rec = await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert result.messages[-1].text == "Hello world"
    assert result.stop_reason is StopReason.END_TURN
    discarded = [e for e in rec if isinstance(e, PartialDiscarded)]
    assert len(discarded) == 1
    before = rec.index(discarded[0])
    assert any(isinstance(e, TextDelta) for e in rec[:before])  # deltas were seen, then dropped


async def test_reset_mid_stream_without_restarts_fails(client: httpx.AsyncClient) -> None:
    cut = Reply(body=OPENAI_OK[:150], then="reset")
    async with LoopbackServer([cut]) as server:
        with pytest.raises(ProviderConnectionError):
            await turn(OpenAIChatProvider(client, server.url + "/v1"), RetryPolicy.none())
    assert len(server.requests) == 1


async def test_malformed_json_chunk_fails_without_retry(client: httpx.AsyncClient) -> None:
    body = sse(chunk("Hel")) + b'data: {"choices": [{"index": 0, "delta": {"content\n\n'
    async with LoopbackServer([Reply(body=body)], default=Reply(body=OPENAI_OK)) as server:
        with pytest.raises(ProviderProtocolError, match="malformed JSON"):
            await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert len(server.requests) == 1


async def test_a_web_page_is_named_as_such_and_not_retried(client: httpx.AsyncClient) -> None:
    # a 200 text/html answer (a proxy's sign-in page, a wrong base_url) used to fail as a
    # connection error, "the stream ended before the model finished", after every retry
    page = Reply(headers={"content-type": "text/html; charset=utf-8"}, body=b"<html>sign in</html>")
    async with LoopbackServer([page], default=Reply(body=OPENAI_OK)) as server:
        with pytest.raises(ProviderProtocolError, match=r"web page \(text/html.*base_url"):
            await turn(OpenAIChatProvider(client, server.url + "/v1"))
    assert len(server.requests) == 1


async def test_mid_stream_overloaded_error_event_is_retried(client: httpx.AsyncClient) -> None:
    overloaded = (
        ANTHROPIC_START
        + ANTHROPIC_TEXT
        + anthropic_event(
            {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
        )
    )
    async with LoopbackServer([Reply(body=overloaded), Reply(body=ANTHROPIC_OK)]) as server:
        result, rec = await turn(AnthropicProvider(client, server.url))
    assert result.messages[-1].text == "Hi!"
    assert sum(isinstance(e, PartialDiscarded) for e in rec) == 1


async def test_mid_stream_error_event_raises_a_typed_error(client: httpx.AsyncClient) -> None:
    bad = ANTHROPIC_START + anthropic_event(
        {"type": "error", "error": {"type": "invalid_request_error", "message": "no such tool"}}
    )
    async with LoopbackServer([Reply(body=bad)]) as server:
        with pytest.raises(ProviderStreamError) as info:
            await turn(AnthropicProvider(client, server.url))
    assert info.value.error_type == "invalid_request_error"
    assert "no such tool" in info.value.message
    assert len(server.requests) == 1


async def test_hanging_stream_hits_the_idle_timeout_then_retries(
    client: httpx.AsyncClient,
) -> None:
    hang = Reply(body=OPENAI_OK[:150], then="hang")
    async with LoopbackServer([hang, Reply(body=OPENAI_OK)]) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1", idle_timeout_s=0.3)
        result, rec = await turn(provider)
        await asyncio.wait_for(server.disconnected.wait(), BOUND)  # the stale stream was closed
    assert result.messages[-1].text == "Hello world"
    assert any(isinstance(e, PartialDiscarded) and "sent nothing" in e.reason for e in rec)


async def test_hang_before_any_byte_is_an_idle_timeout(client: httpx.AsyncClient) -> None:
    async with LoopbackServer([Reply(body=b"", then="hang")]) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1", idle_timeout_s=0.2)
        with pytest.raises(ProviderConnectionError, match="sent nothing"):
            await turn(provider, RetryPolicy.none())


async def test_truncated_body_is_a_connection_error(client: httpx.AsyncClient) -> None:
    # a clean end of body, but the stream never finished: no finish_reason, no [DONE]
    async with LoopbackServer([Reply(body=sse(chunk("Hel")))]) as server:
        with pytest.raises(ProviderConnectionError, match="ended before"):
            await turn(OpenAIChatProvider(client, server.url + "/v1"), RetryPolicy.none())


async def test_cancel_mid_stream_disconnects_from_the_server(client: httpx.AsyncClient) -> None:
    for provider_kind, body in (("openai_chat", OPENAI_OK[:150]), ("anthropic", ANTHROPIC_START)):
        async with LoopbackServer([Reply(body=body, then="hang")]) as server:
            base = server.url + ("/v1" if provider_kind == "openai_chat" else "")
            provider = make_provider(provider_kind, client=client, base_url=base)
            started = asyncio.Event()
            rec = EventRecorder()

            def emit(
                event: TurnEvent, rec: EventRecorder = rec, started: asyncio.Event = started
            ) -> None:
                rec.append(event)
                started.set()

            task = asyncio.create_task(
                run_turn(provider, TurnConfig(model="m"), HISTORY, emit=emit)
            )
            if provider_kind == "openai_chat":
                await asyncio.wait_for(started.wait(), BOUND)
            else:
                await asyncio.wait_for(_until(lambda s=server: bool(s.requests)), BOUND)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            await asyncio.wait_for(server.disconnected.wait(), BOUND)


async def _until(condition: Any) -> None:
    """Eventually-helper for state the server has no event for; bounded by the caller."""
    while not condition():  # noqa: ASYNC110
        await asyncio.sleep(0.01)


async def test_api_key_from_env_goes_in_headers_only(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-very-secret-123"
    monkeypatch.setenv("WR_TEST_KEY", secret)
    denied = Reply.json(401, {"error": {"message": "invalid x-api-key"}})
    async with LoopbackServer([Reply(body=OPENAI_OK), denied, Reply(body=ANTHROPIC_OK)]) as server:
        openai_p = OpenAIChatProvider(client, server.url + "/v1", "WR_TEST_KEY", {"x-extra": "1"})
        await turn(openai_p)
        anthropic_p = AnthropicProvider(client, server.url, "WR_TEST_KEY")
        with pytest.raises(ProviderHTTPError) as info:
            await turn(anthropic_p)
        rec = EventRecorder()
        await run_turn(anthropic_p, TurnConfig(model="m"), HISTORY, emit=rec)
    first, second, _ = server.requests
    assert first.headers["authorization"] == f"Bearer {secret}"
    assert first.headers["x-extra"] == "1"
    assert second.headers["x-api-key"] == secret
    assert second.headers["anthropic-version"] == "2023-06-01"
    assert secret not in str(info.value)
    assert secret not in repr(info.value.args)
    assert all(secret not in repr(e) for e in rec)
    monkeypatch.delenv("WR_TEST_KEY")
    with pytest.raises(ConfigurationError, match="WR_TEST_KEY"):
        await turn(openai_p)


async def test_connection_refused_is_a_connection_error(client: httpx.AsyncClient) -> None:
    async with LoopbackServer() as server:
        url = server.url
    # the server is gone: nothing listens on that port now
    with pytest.raises(ProviderConnectionError):
        await turn(OpenAIChatProvider(client, url + "/v1"), RetryPolicy(
            max_attempts=2, initial_backoff_s=0.001))  # fmt: skip
