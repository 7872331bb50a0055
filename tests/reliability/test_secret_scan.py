"""Guarantee 8 end to end: a real ``serve`` process (DEBUG logging) runs against a loopback provider
that echoes the credential it received in every shape seen in the wild; every response, event,
diagnostic, run error and log line (stdout and stderr, httpx/httpcore records included) is scanned
for the key and for any 12-character piece of it. The key's env var ends with a newline, as keys
saved with ``echo`` into env files do."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from serving import ServeProcessFactory, all_events

from engine.testing import LoopbackServer, RecordedRequest, Reply
from runtime_client import RunState
from runtime_server.runtime import ConfigError, parse_config

KEY = "sk-scan-" + secrets.token_urlsafe(30)
GATEWAY_KEY = "gw-" + secrets.token_urlsafe(24)
URL_PASSWORD = "pw-" + secrets.token_urlsafe(24)  # in a base_url's userinfo
BASIC = base64.b64encode(f"user:{URL_PASSWORD}".encode()).decode()  # what httpx sends for it
ENV = "WR_SCAN_PROVIDER_KEY"
BOUND = 30.0  # seconds: a safety net on a shared machine, never a speed assertion


def pieces(secret: str, n: int = 12) -> list[str]:
    return [secret[i : i + n] for i in range(len(secret) - n + 1)]


def leaks(text: str) -> list[str]:
    return [p for s in (KEY, GATEWAY_KEY, URL_PASSWORD, BASIC) for p in pieces(s) if p in text]


def credential(req: RecordedRequest) -> str:
    for name in ("authorization", "x-api-key", "x-gateway-key"):
        if name in req.headers:
            return req.headers[name]
    raise AssertionError(f"no credential in {sorted(req.headers)}")


def sse(payload: object, event: str | None = None) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload)
    return ((f"event: {event}\n" if event else "") + f"data: {data}\n\n").encode()


# Each shape: the provider's answer as a function of the credential it received.
SHAPES: dict[str, Callable[[str], Reply]] = {
    "stream-error-message": lambda c: Reply(
        body=sse({"error": {"message": f"Incorrect API key provided: {c}", "type": "auth"}})
    ),
    "stream-error-no-message": lambda c: Reply(
        body=sse({"error": {"type": "auth", "pad": "p" * 150 + c}})
    ),
    "malformed-line": lambda c: Reply(body=sse('{"choices": [' + c + " oops")),
    "long-text-body": lambda c: Reply(
        status=401,
        body=("x" * 485 + c + " " + "y" * 300).encode(),
        headers={"content-type": "text/plain"},
    ),
    "retryable-echo": lambda c: Reply(
        status=503, body=f"upstream rejected {c}".encode(), headers={"content-type": "text/plain"}
    ),
    "json-200": lambda c: Reply.json(200, {"error": {"message": f"bad key {c}"}}),
    "partial-echo": lambda c: Reply.json(403, {"error": {"message": f"key {c[:30]}... refused"}}),
    "content-echo": lambda c: Reply(
        body=sse({"choices": [{"index": 0, "delta": {"content": f"key: {c}", c: 1}}]})
        + sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        + sse("[DONE]")
    ),
    "anthropic-error-event": lambda c: Reply(
        body=sse(
            {"type": "error", "error": {"type": "authentication_error", "message": f"bad {c}"}},
            event="error",
        )
    ),
}


def respond(req: RecordedRequest) -> Reply:
    """The shape named by the run's input text."""
    text = json.dumps(req.json()["messages"])
    shape = next(name for name in SHAPES if name in text)
    return SHAPES[shape](credential(req))


CONFIG = """\
[providers.oa]
kind = "openai_chat"
base_url = "{url}/v1"
api_key_env = "{env}"
max_retries = 1

[providers.an]
kind = "anthropic"
base_url = "{url}"
api_key_env = "{env}"
max_retries = 0

[providers.gateway]
kind = "openai_chat"
base_url = "{url}/v1"
headers = {{ "x-gateway-key" = "{gateway}" }}
max_retries = 0

[providers.userinfo]
kind = "openai_chat"
base_url = "{userinfo_url}/v1"
max_retries = 0

[profiles.userinfo]
provider = "userinfo"
model = "m"

[profiles.oa]
provider = "oa"
model = "m"

[profiles.an]
provider = "an"
model = "m"

[profiles.gateway]
provider = "gateway"
model = "m"
"""

RUNS = [
    *(("oa", shape) for shape in SHAPES if shape != "anthropic-error-event"),
    ("an", "anthropic-error-event"),
    ("an", "long-text-body"),
    ("gateway", "stream-error-message"),
    ("gateway", "long-text-body"),
    ("userinfo", "stream-error-message"),
    ("userinfo", "malformed-line"),
]


async def test_no_key_in_any_output(
    serve_process: ServeProcessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, KEY + "\n")
    async with LoopbackServer(default=respond) as provider:
        config = tmp_path / "providers.toml"
        userinfo_url = provider.url.replace("http://", f"http://user:{URL_PASSWORD}@")
        config.write_text(
            CONFIG.format(url=provider.url, env=ENV, gateway=GATEWAY_KEY, userinfo_url=userinfo_url)
        )
        sp = await serve_process(tmp_path / "data", config=config, extra=["--log-level", "DEBUG"])
        client = sp.client()
        seen: list[str] = []
        runs = []
        for profile, shape in RUNS:
            worker = (await client.create_worker(profile=profile)).worker
            accepted = await client.send_input(worker.worker_id, f"please answer {shape}")
            run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
            runs.append((profile, shape, run))
            seen += [repr(run), repr(await client.get_run(run.run_id))]
            seen.append(repr(await client.get_transcript(worker.worker_id)))
            seen.append(repr(await client.get_worker(worker.worker_id)))
        seen.append(repr(await client.get_runtime()))
        seen.append(repr(await client.list_profiles()))
        seen.append(repr(await client.list_diagnostics(page_size=1000)))
        seen.append(repr(await client.get_usage()))
        events = await all_events(client)
        seen += [repr(e) for e in events] + [str(e.raw) for e in events]
        for batched in (True, False):  # SubscribeEventBatches and SubscribeEvents
            streamed = client.subscribe(after_seq=0, batched=batched)
            async with asyncio.timeout(BOUND), contextlib.aclosing(streamed):
                async for event in streamed:
                    seen += [repr(event), str(event.raw)]
                    if event.seq >= events[-1].seq:
                        break
        assert sp.terminate() == 0
    out, err = sp.stdout_path.read_text(errors="replace"), sp.stderr()
    for text in (*seen, out, err):
        found = leaks(text)
        assert not found, f"{found[:2]} in {text[:300]!r}"

    # The provider got the key, stripped of the env var's newline, in the right header.
    headers = [r.headers for r in provider.requests]
    assert {"authorization": f"Bearer {KEY}"}.items() <= headers[0].items()
    assert any(h.get("x-api-key") == KEY for h in headers)
    assert any(h.get("x-gateway-key") == GATEWAY_KEY for h in headers)
    assert any(h.get("authorization") == f"Basic {BASIC}" for h in headers)
    # Every shape really ran and said what went wrong, redacted.
    for profile, shape, run in runs:
        if shape == "content-echo":
            assert run.state is RunState.COMPLETED, (profile, shape, run)
        else:
            assert run.state is RunState.FAILED, (profile, shape, run)
            assert run.error is not None
            assert run.error.message, (profile, shape)
    assert "[redacted]" in "".join(seen)
    # DEBUG logging was on, httpx and httpcore included: the scan below covers their records.
    assert "httpcore" in err
    assert "httpx" in err


@pytest.mark.parametrize("value", [GATEWAY_KEY + "\n", f"{GATEWAY_KEY}\x07x", f"é{GATEWAY_KEY}"])
def test_configured_header_values_httpx_would_refuse_are_config_errors(value: str) -> None:
    """A configured header value httpx would refuse (quoting it) is a config error at load time,
    naming the key and never the value."""
    config = {"providers": {"gw": {"kind": "openai_chat", "headers": {"x-gateway-key": value}}}}
    with pytest.raises(ConfigError) as info:
        parse_config(config, source="runtime.toml")
    assert "providers.gw.headers.'x-gateway-key'" in str(info.value)
    assert not leaks(str(info.value))
