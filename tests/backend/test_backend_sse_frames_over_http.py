"""What a browser reads from a worker's event stream, through a real Backend over HTTP, is byte
for byte the generic encoding of each event (``event_view`` as JSON, the frame every earlier
version wrote): every payload kind a run and a worker's life send — reasoning, tool calls (a
result and an error), a retried stream, a failed run whose error names a host, text with quotes,
backslashes, markup, non-ASCII and a line separator — across several runs (the run id changes
under the stream's encoder, and events without a run come between), then the end on deletion;
and the same bytes again when a browser resumes with ``Last-Event-ID``.

The Backend writes deltas without the generic view, and keeps a stream's escaped ids while they
do not change (``backend.views.EventFrames``); its pump joins frames into writes
(``backend.sse.with_heartbeats``): none of that may change a byte a browser receives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from backend_serving import (
    CSRF,
    EMBEDDED_CONFIG,
    REMOTE_TOKEN,
    backend_config,
    eventually,
    start_backend,
)

import engine
from backend.sse import Frame, encode
from backend.views import event_view
from engine import ScriptedProvider
from engine.testing import text_reply, tool_reply

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 60.0  # a safety net, never a speed assertion
TRICKY = 'say "hi"\n\\ <b>é</b> \u2028 ✓ 💡'


def _scripts() -> list[list[Any]]:
    thinking = [engine.ReasoningDelta("let me see…"), *tool_reply(
        ("call-1", "add", '{"a": 1, "b": 2}'), ("call-2", "broken", "{}")
    )]  # fmt: skip
    retried = [engine.TextDelta("half"), engine.ProviderStreamError("hiccup", retryable=True)]
    failing = [
        engine.TextDelta("doomed"),
        engine.ProviderStreamError("gone at http://10.1.2.3:99/v1", retryable=False),
    ]
    return [thinking, text_reply(TRICKY), retried, text_reply("a whole answer"), failing]


async def _add(args: Mapping[str, Any]) -> str:
    return str(args["a"] + args["b"])


async def _broken(args: Mapping[str, Any]) -> str:
    raise RuntimeError("this tool always fails")


def _frames(body: bytes) -> list[bytes]:
    """The ``id:`` frames of an SSE body (no preamble, heartbeat or status frame)."""
    return [f + b"\n\n" for f in body.split(b"\n\n") if f.startswith(b"id: ")]


async def _read(http: httpx.AsyncClient, path: str, headers: Mapping[str, str]) -> bytes:
    """The stream's bytes up to and including its ``event: end`` frame."""
    body = b""
    async with http.stream("GET", path, headers=headers) as resp:
        assert resp.status_code == 200
        async with asyncio.timeout(BOUND):
            async for chunk in resp.aiter_bytes():
                body += chunk
                if b"event: end\n" in body and body.endswith(b"\n\n"):
                    return body
    raise AssertionError(f"the stream ended without its end frame: {body[-300:]!r}")


async def test_every_event_kind_reaches_the_browser_as_the_generic_encoding(
    serve: ServeFactory, tmp_path: Path
) -> None:
    provider = ScriptedProvider(_scripts())
    tools = engine.ToolRegistry(
        [engine.Tool("add", "Adds a and b.", _add), engine.Tool("broken", "Fails.", _broken)]
    )
    served = await serve(
        auth_token=REMOTE_TOKEN,
        provider_factory=lambda _profile: provider,
        tools_factory=lambda _p, _w: tools,
    )
    client = served.client
    wid = (await client.create_worker(display_name="Zoë <i>")).worker.worker_id
    for text in ("use the tools", "retry please", "fail now"):
        accepted = await client.send_input(wid, text)
        await client.wait_run(accepted.run.run_id, timeout=BOUND)
    before = (await client.list_events(worker_id=wid)).events
    middle = before[len(before) // 2].seq

    (tmp_path / "embedded.toml").write_text(EMBEDDED_CONFIG, encoding="utf-8")
    backend = await start_backend(
        tmp_path,
        backend_config(served.server.port),
        {"TEST_REMOTE_TOKEN": REMOTE_TOKEN},
    )
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=BOUND, headers=CSRF) as http:
            found: list[str] = []

            async def ready() -> bool:
                runtimes = (await http.get("/api/runtimes")).json()["runtimes"]
                found[:] = [
                    r["runtime_id"]
                    for r in runtimes
                    if r["kind"] == "remote" and r["state"] == "READY"
                ]
                return bool(found)

            await eventually(ready, timeout=BOUND)
            path = f"/api/runtimes/{found[0]}/workers/{wid}/events"
            # a replay from the start, and a browser resuming mid-way; both then follow live
            # (the stop and the deletion) until the stream's end
            reads = [
                asyncio.create_task(_read(http, path + "?after_seq=0", {})),
                asyncio.create_task(_read(http, path, {"last-event-id": str(middle)})),
            ]

            async def both_open() -> bool:  # (a deleted worker's stream would be a 404)
                return bool((await http.get("/healthz")).json()["open_streams"] == 2)

            await eventually(both_open, timeout=BOUND)
            await client.stop_worker(wid, reason="enough")
            await client.delete_worker(wid)
            body, resumed = await asyncio.gather(*reads)
    finally:
        backend.terminate()

    events = [e for e in (await client.list_events()).events if e.worker_id == wid]
    assert {
        "worker_created", "reasoning_delta", "tool_call_started", "tool_call_finished",
        "partial_discarded", "text_delta", "message_committed", "run_finished",
        "worker_stopped", "worker_deleted", "input_committed", "usage_reported",
    } <= {e.kind for e in events}  # fmt: skip
    assert len({e.run_id for e in events}) == 4  # three runs and the worker's own events
    expected = [encode(Frame(event_view(e), id=e.seq)) for e in events]
    assert b"10.1.2.3" not in b"".join(expected)  # the run error's host is scrubbed
    end = encode(Frame({"reason": "WORKER_DELETED"}, "end", final=True))

    assert _frames(body) == expected
    assert body.endswith(expected[-1] + end)
    assert _frames(resumed) == [f for e, f in zip(events, expected, strict=True) if e.seq > middle]
    assert resumed.endswith(expected[-1] + end)
