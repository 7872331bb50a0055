"""Provider credentials never leave the engine: a real loopback server echoes the credential it
received in every shape a provider (or proxy) has been seen to use, and the run's events, its error
and every log record (DEBUG included, httpx/httpcore included) are scanned for the key and for any
12-character piece of it."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from engine import (
    AnthropicProvider,
    ConfigurationError,
    EngineError,
    Message,
    OpenAIChatProvider,
    RedactingFilter,
    Redactor,
    RetryPolicy,
    Role,
    SecretRegistry,
    Tool,
    ToolRegistry,
    TurnConfig,
    request_secrets,
    run_turn,
)
from engine.testing import EventRecorder, LoopbackServer, RecordedRequest, Reply

KEY = "sk-live-7f3a9c2e51b84d06a1e2c3b4d5e6f708192a3b4c"
ENV = "WR_SECRET_SCAN_KEY"
FAST = RetryPolicy(max_attempts=2, initial_backoff_s=0.001, max_backoff_s=0.01)
HISTORY = (Message(Role.USER, "hi"),)
BOUND = 10  # seconds: a safety net only


def leaks(text: str, secret: str = KEY, n: int = 12) -> list[str]:
    """The secret or any n-character piece of it found in ``text``."""
    return [secret[i : i + n] for i in range(len(secret) - n + 1) if secret[i : i + n] in text]


def credential(request: RecordedRequest) -> str:
    """The credential header as the server received it (what a careless server echoes)."""
    for name in ("authorization", "x-api-key", "api-key"):
        if name in request.headers:
            return request.headers[name]
    raise AssertionError(f"no credential header in {request.headers}")


def sse(data: str, event: str | None = None) -> bytes:
    return ((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode()


def openai_error_with_message(req: RecordedRequest) -> Reply:
    error = {"message": f"Incorrect API key provided: {credential(req)}", "type": "auth_error"}
    return Reply(body=sse(json.dumps({"error": error})))


def openai_error_without_message(req: RecordedRequest) -> Reply:
    # No "message": the parser quotes the chunk itself, cut at 200 characters — put the key
    # across that cut.
    pad = "p" * (200 - len('{"error": {"type": "auth", "pad": "') - 12)
    return Reply(body=sse(json.dumps({"error": {"type": "auth", "pad": pad + credential(req)}})))


def malformed_line(req: RecordedRequest) -> Reply:
    return Reply(body=sse('{"choices": [' + credential(req) + " oops"))


def anthropic_error_event(req: RecordedRequest) -> Reply:
    payload = {
        "type": "error",
        "error": {"type": "authentication_error", "message": f"bad x-api-key {credential(req)}"},
    }
    return Reply(body=sse(json.dumps(payload), event="error"))


def long_text_error(req: RecordedRequest) -> Reply:
    # A non-JSON body over the 500 quoted characters, the key straddling character 500.
    body = "x" * (500 - 15) + credential(req) + " " + "y" * 300
    return Reply(status=401, body=body.encode(), headers={"content-type": "text/plain"})


def partial_echo(req: RecordedRequest) -> Reply:
    # A proxy that quotes only the start of the key it rejected.
    return Reply.json(403, {"error": {"message": f"key {credential(req)[:30]}... refused"}})


def echo_in_content_and_field_names(req: RecordedRequest) -> Reply:
    secret = credential(req)
    delta = {"content": f"your key is {secret}", secret: "x"}  # unknown field → a Notice
    chunk = {"choices": [{"index": 0, "delta": delta, "finish_reason": "stop"}]}
    return Reply(body=sse(json.dumps(chunk)) + sse("[DONE]"))


async def drive(provider: Any) -> tuple[list[str], str | None]:
    """Run one turn; the texts it let out (events and error)."""
    rec = EventRecorder()
    error: str | None = None
    try:
        result = await asyncio.wait_for(
            run_turn(provider, TurnConfig(model="m", retry=FAST), HISTORY, emit=rec), BOUND
        )
        outputs = [repr(m) for m in result.messages]
    except EngineError as exc:
        error = f"{exc} {exc.message!r} {exc.args!r}"
        outputs = [error]
    return [*outputs, *(repr(e) for e in rec)], error


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(r) for r in caplog.records)


OPENAI_SHAPES: dict[str, Callable[[RecordedRequest], Reply]] = {
    "stream-error-with-message": openai_error_with_message,
    "stream-error-without-message": openai_error_without_message,
    "malformed-json-line": malformed_line,
    "long-text-error-body": long_text_error,
    "partial-echo": partial_echo,
    "content-and-field-names": echo_in_content_and_field_names,
}


@pytest.mark.parametrize("shape", sorted(OPENAI_SHAPES))
async def test_openai_echoes_are_redacted_everywhere(
    shape: str,
    client: httpx.AsyncClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(ENV, KEY)
    async with LoopbackServer(default=OPENAI_SHAPES[shape]) as server:
        outputs, _ = await drive(OpenAIChatProvider(client, server.url + "/v1", ENV))
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert "[redacted]" in "".join(outputs)
    for text in (*outputs, log_text(caplog)):
        assert not leaks(text), text


async def test_anthropic_error_event_echoing_x_api_key(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(ENV, KEY)
    async with LoopbackServer(default=anthropic_error_event) as server:
        outputs, error = await drive(AnthropicProvider(client, server.url, ENV))
    assert server.requests[0].headers["x-api-key"] == KEY
    assert error is not None
    assert "authentication_error" in error
    assert "[redacted]" in error
    for text in (*outputs, log_text(caplog)):
        assert not leaks(text), text


async def test_key_with_a_trailing_newline_is_stripped(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Env files often end the key with a newline; httpx refused the header and quoted it
    ("Illegal header value b'Bearer sk-...\\n'") in the error and in httpcore's DEBUG log."""
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv(ENV, f"  {KEY}\n")
    async with LoopbackServer(default=openai_error_with_message) as server:
        outputs, error = await drive(OpenAIChatProvider(client, server.url + "/v1", ENV))
    assert server.requests
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert error is not None
    assert "Incorrect API key provided: [redacted]" in error
    for text in (*outputs, log_text(caplog)):
        assert not leaks(text), text


@pytest.mark.parametrize(
    "value",
    [f"{KEY[:20]}\n{KEY[20:]}", f"{KEY}\x07", f"{KEY}é"],
    ids=["inner-newline", "control", "non-ascii"],
)
async def test_key_with_inner_control_or_non_ascii_is_refused_by_name(
    value: str, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, value)
    async with LoopbackServer(default=openai_error_with_message) as server:
        with pytest.raises(ConfigurationError) as info:
            await asyncio.wait_for(
                run_turn(
                    OpenAIChatProvider(client, server.url + "/v1", ENV),
                    TurnConfig(model="m", retry=FAST),
                    HISTORY,
                    emit=EventRecorder(),
                ),
                BOUND,
            )
    assert ENV in info.value.message
    assert not leaks(str(info.value))
    assert not server.requests


async def test_illegal_header_value_is_redacted_from_error_and_httpcore_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """A configured credential header that httpx refuses: the refusal quotes the value, in the
    run error and in httpcore's DEBUG record."""
    caplog.set_level(logging.DEBUG)
    async with LoopbackServer(default=openai_error_with_message) as server:
        provider = OpenAIChatProvider(
            client, server.url + "/v1", extra_headers={"api-key": KEY + "\n"}
        )
        outputs, error = await drive(provider)
    assert error is not None
    assert "[redacted]" in error
    assert "Illegal header value" in error
    logged = log_text(caplog)
    assert "Illegal header value" in logged  # httpcore did log it, redacted
    for text in (*outputs, logged):
        assert not leaks(text), text


def test_request_secrets_cover_credential_and_configured_headers() -> None:
    headers = {
        "authorization": f"Bearer {KEY}",
        "x-goog-api-key": "g" * 20,
        "OpenAI-Organization": "org-1234567890",
        "x-version": "1",
        "accept": "text/event-stream",
    }
    found = request_secrets(headers, {"OpenAI-Organization": "org-1234567890", "x-version": "1"})
    assert set(found) == {f"Bearer {KEY}", KEY, "g" * 20, "org-1234567890"}


def test_redactor_encodings_and_fragments() -> None:
    redact = Redactor([f"Bearer {KEY}", KEY])
    texts = [
        f"b'Bearer {KEY}\\n'",
        json.dumps({"k": KEY + "\n"}),
        f"url?key={KEY.replace('-', '%2D')}",
        f"prefix {KEY[:14]}",
        f"{KEY[-13:]} suffix",
    ]
    for text in texts:
        assert not leaks(redact(text)), redact(text)
    assert redact.quick("text without secrets") == "text without secrets"
    assert redact("Bearer token x") == "Bearer token x"  # fragments are of the key, not "Bearer "


PARTIAL_MIN = 10  # the documented fragment length (engine._redact.PARTIAL_MIN)


def test_every_fragment_is_redacted_wherever_it_starts_and_ends() -> None:
    # Texts are first checked for the key's aligned chunks (cheap) before the window scan: a
    # chunking that missed some fragment would let it through here.
    secret = "sk-" + uuid.uuid4().hex + uuid.uuid4().hex[:7]  # an odd length: a short last chunk
    redact = Redactor([secret])
    for start in range(len(secret) - PARTIAL_MIN + 1):
        for end in range(start + PARTIAL_MIN, min(len(secret), start + PARTIAL_MIN + 6) + 1):
            text = f"error: key {secret[start:end]} refused"
            assert secret[start : start + PARTIAL_MIN] not in redact(text), (start, end)
    shorter = secret[5 : 5 + PARTIAL_MIN - 1]  # below the fragment length: left alone
    assert redact(f"x {shorter} y") == f"x {shorter} y"


def test_registry_is_bounded_and_forgets() -> None:
    registry = SecretRegistry(max_secrets=8)
    secrets = [uuid.uuid4().hex for _ in range(50)]
    for secret in secrets:
        registry.remember([secret])
    assert len(registry) == 8
    redact = registry.redactor()
    assert redact(secrets[-1]) == "[redacted]"
    assert redact(secrets[0]) == secrets[0]  # the oldest aged out
    registry.forget(secrets[-8:])
    assert len(registry) == 0
    assert not registry.redactor()


def test_filter_redacts_args_exceptions_and_stack() -> None:
    registry = SecretRegistry()
    registry.remember([KEY])
    logger = logging.getLogger("test_secret_redaction.filter")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(RedactingFilter(registry))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.warning("value %s and %r", KEY, {"k": KEY})
        try:
            raise ValueError(f"bad {KEY}")
        except ValueError:
            logger.exception("failed", stack_info=True)
    finally:
        logger.removeHandler(handler)
    formatter = logging.Formatter()
    for record in records:
        assert not leaks(formatter.format(record))
    assert "[redacted]" in records[0].getMessage()


async def test_url_userinfo_password_is_redacted_from_errors_and_httpx_log(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """httpx logs the request URL whole (password included) at INFO and sends the userinfo as
    Basic credentials, which a careless server echoes."""
    caplog.set_level(logging.DEBUG)
    password = KEY[::-1]
    async with LoopbackServer(default=openai_error_with_message) as server:
        base_url = server.url.replace("http://", f"http://user:{password}@") + "/v1"
        outputs, error = await drive(OpenAIChatProvider(client, base_url))
    assert server.requests[0].headers["authorization"].startswith("Basic ")
    basic = server.requests[0].headers["authorization"].removeprefix("Basic ")
    logged = log_text(caplog)
    assert "HTTP Request: POST http://user:[redacted]@" in logged
    assert error is not None
    assert "Incorrect API key provided: Basic [redacted]" in error
    for text in (*outputs, logged):
        assert not leaks(text, password), text
        assert not leaks(text, basic), text


async def test_tool_output_holding_the_live_key_is_redacted(
    client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tool that reads the key (a ``.env`` in the workspace): its result reaches events, the
    transcript and the next request without it — also when the cap cuts through the key."""
    monkeypatch.setenv(ENV, KEY)
    call = {"index": 0, "id": "c1", "function": {"name": "env", "arguments": "{}"}}
    tool_call = {"choices": [{"index": 0, "delta": {"tool_calls": [call]}}]}
    finish = {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}
    done = {"choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]}
    replies = [
        Reply(body=sse(json.dumps(tool_call)) + sse(json.dumps(finish)) + sse("[DONE]")),
        Reply(body=sse(json.dumps(done)) + sse("[DONE]")),
    ]

    async def read_env(args: Any) -> str:
        return "x" * 90 + f"OPENAI_API_KEY={KEY}\n"  # the cap below falls inside the key

    tools = ToolRegistry([Tool("env", "reads .env", read_env)])
    rec = EventRecorder()
    async with LoopbackServer(replies) as server:
        provider = OpenAIChatProvider(client, server.url + "/v1", ENV)
        config = TurnConfig(model="m", retry=FAST, tool_output_max_chars=120)
        result = await asyncio.wait_for(
            run_turn(provider, config, HISTORY, emit=rec, tools=tools), BOUND
        )
    texts = [repr(e) for e in rec] + [repr(m) for m in result.messages]
    texts.append(server.requests[1].body.decode())  # what the model saw of the result
    assert "OPENAI_API_KEY=[redacted]" in "".join(texts)
    for text in texts:
        assert not leaks(text), text
