"""Anthropic Messages, streaming (also llama.cpp's ``/v1/messages``).

Decisions worth knowing:

- ``base_url`` is the host root, as Anthropic documents it (``https://api.anthropic.com``); the
  request goes to ``{base_url}/v1/messages``. A ``base_url`` that already ends in ``/v1`` is not
  doubled (``http://127.0.0.1:8080/v1`` works too).
- Content blocks are keyed by ``index``: text, thinking and tool_use blocks may interleave.
- Thinking: ``thinking_delta`` text becomes reasoning; every ``thinking`` block (with its own
  ``signature_delta``) and every ``redacted_thinking`` block (its encrypted ``data``) is kept as one
  :class:`ReasoningBlock`, in order, and sent back verbatim in later requests (the API requires
  them with tool use, and rejects a merged or re-signed block). Interleaved thinking gives several
  signed blocks in one message. Unsigned reasoning (from another provider) is not sent back: the
  API would reject a thinking block without a signature.
- A refusal's ``stop_details`` (``category``, ``explanation``) would otherwise leave an empty
  answer: the explanation is surfaced as the message's text (after any text already streamed),
  so the user sees why.
- Unknown block types (``server_tool_use``, ``web_search_tool_result``, ``compaction``, ...) and
  unknown delta or event types are skipped with one :class:`Notice` each, never a crash. A
  server-side tool call is *not* a tool call for us to run.
- ``event: error`` mid-stream raises :class:`ProviderStreamError` with the provider's type and
  message; ``overloaded_error`` and ``api_error`` are retryable.
- ``max_tokens`` is required by the API: ``default_max_tokens`` fills it when the request has none.
- Tool results go back as ``tool_result`` blocks in a user message; consecutive messages of one
  role are merged, so parallel results share one user message, as the API expects.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from engine import _json
from engine._errors import (
    ConfigurationError,
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderStreamError,
)
from engine._http import (
    api_key_from_env,
    error_message_from_json,
    error_type_from_json,
    parsed_stream,
)
from engine._openai import new_call_id
from engine._sse import SSEEvent
from engine._types import (
    Message,
    ModelRequest,
    Notice,
    ReasoningBlock,
    ReasoningBlockEnd,
    ReasoningDelta,
    Role,
    StopReason,
    StreamEvent,
    StreamStop,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
    UsageUpdate,
)
from engine._usage import AnthropicUsage

STOP_REASONS: Mapping[str, StopReason] = {
    "end_turn": StopReason.END_TURN,
    "stop_sequence": StopReason.END_TURN,
    "max_tokens": StopReason.LENGTH,
    "model_context_window_exceeded": StopReason.LENGTH,
    "tool_use": StopReason.TOOL_USE,
    "refusal": StopReason.REFUSAL,
    "pause_turn": StopReason.PAUSE,
}
_RETRYABLE_STREAM_ERRORS = frozenset({"overloaded_error", "api_error"})
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
PROVIDER = "anthropic"


@dataclass(slots=True)
class _Block:
    type: str
    start_input: Any = None  # tool_use: the ``input`` of content_block_start, if any
    saw_json: bool = False  # tool_use: any input_json_delta arrived
    closed: bool = False
    # thinking: the block's text and signature; redacted_thinking: its data (in ``signature``)
    thinking: list[str] | None = None
    signature: str = ""
    # thinking/redacted_thinking: text characters and tool calls of the message before this block
    after: tuple[int, int] = (0, 0)


class AnthropicStreamParser:
    """Pure: one parsed SSE event in, stream events out. ``finish()`` at end of body."""

    def __init__(self) -> None:
        self._blocks: dict[int, _Block] = {}
        self._usage = AnthropicUsage()
        self._stopped = False  # saw message_stop
        self._stop_reason: str | None = None
        self._saw_text = False
        self._text_chars = 0  # characters of text streamed so far (where a block stands)
        self._tool_calls = 0  # tool_use blocks started so far
        self._noticed: set[str] = set()

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        try:
            payload = _json.loads(sse.data)
        except ValueError as exc:
            raise ProviderProtocolError(
                f"{PROVIDER}: malformed JSON in the stream: {sse.data[:200]!r}"
            ) from exc
        if not isinstance(payload, dict):
            raise ProviderProtocolError(f"{PROVIDER}: a stream event is not an object")
        kind = payload.get("type")
        if not isinstance(kind, str):
            kind = sse.event
        out: list[StreamEvent] = []
        if kind == "ping":
            pass
        elif kind == "message_start":
            message = payload.get("message")
            if isinstance(message, dict) and isinstance(message.get("usage"), dict):
                out.append(UsageUpdate(self._usage.update(message["usage"])))
        elif kind == "content_block_start":
            self._block_start(payload, out)
        elif kind == "content_block_delta":
            self._block_delta(payload, out)
        elif kind == "content_block_stop":
            self._block_stop(payload.get("index"), out)
        elif kind == "message_delta":
            delta = payload.get("delta")
            if isinstance(delta, dict) and isinstance(delta.get("stop_reason"), str):
                self._stop_reason = delta["stop_reason"]
                self._stop_details(delta.get("stop_details"), out)
            usage = payload.get("usage")
            if isinstance(usage, dict):
                out.append(UsageUpdate(self._usage.update(usage)))
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":
            error_type = error_type_from_json(payload)
            message = error_message_from_json(payload) or sse.data[:200]
            raise ProviderStreamError(
                f"{PROVIDER}: error in the stream: {message}",
                error_type=error_type,
                retryable=error_type in _RETRYABLE_STREAM_ERRORS,
            )
        else:
            self._notice_once(out, f"event:{kind}", f"ignored unknown stream event {kind!r}")
        return out

    def finish(self) -> list[StreamEvent]:
        if not self._stopped and self._stop_reason is None:
            # Neither message_delta's stop_reason nor message_stop: the body was cut short.
            raise ProviderConnectionError(f"{PROVIDER}: the stream ended before message_stop")
        out: list[StreamEvent] = []
        for index in sorted(self._blocks):
            self._block_stop(index, out)  # blocks left open (max_tokens inside a tool input)
        raw = self._stop_reason or ""
        out.append(StreamStop(STOP_REASONS.get(raw, StopReason.UNKNOWN), raw))
        return out

    def _block_start(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        index = payload.get("index")
        block = payload.get("content_block")
        if not isinstance(index, int) or not isinstance(block, dict):
            self._notice_once(out, "malformed_block", "ignored a malformed content_block_start")
            return
        kind = str(block.get("type"))
        self._blocks[index] = state = _Block(kind)
        if kind == "text":
            text = block.get("text")
            if isinstance(text, str) and text:
                self._saw_text = True
                self._text_chars += len(text)
                out.append(TextDelta(text))
            return
        state.after = (self._text_chars, self._tool_calls)
        if kind == "thinking":
            thinking = block.get("thinking")
            signature = block.get("signature")
            text = thinking if isinstance(thinking, str) else ""
            state.thinking = [text] if text else []
            state.signature = signature if isinstance(signature, str) else ""
            if text:
                out.append(ReasoningDelta(text))
        elif kind == "redacted_thinking":
            data = block.get("data")
            state.signature = data if isinstance(data, str) else ""
        elif kind == "tool_use":
            self._tool_calls += 1
            call_id, name = block.get("id"), block.get("name")
            state.start_input = block.get("input")
            out.append(
                ToolCallStart(
                    index,
                    call_id if isinstance(call_id, str) and call_id else new_call_id(),
                    name if isinstance(name, str) else "",
                )
            )
        else:
            self._notice_once(
                out, f"block:{kind}", f"ignored content block of unknown type {kind!r}"
            )

    def _block_delta(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        index = payload.get("index")
        delta = payload.get("delta")
        if not isinstance(index, int) or not isinstance(delta, dict):
            self._notice_once(out, "malformed_delta", "ignored a malformed content_block_delta")
            return
        block = self._blocks.get(index)
        kind = delta.get("type")
        if block is None:
            self._notice_once(out, "orphan_delta", f"ignored a delta for unknown block {index}")
            return
        if block.type not in ("text", "thinking", "tool_use"):
            return  # redacted_thinking has no deltas; an unknown block was noticed at its start
        if kind == "text_delta" and isinstance(delta.get("text"), str):
            if delta["text"]:
                self._saw_text = True
                self._text_chars += len(delta["text"])
                out.append(TextDelta(delta["text"]))
        elif kind == "thinking_delta" and isinstance(delta.get("thinking"), str):
            if delta["thinking"] and block.thinking is not None:
                block.thinking.append(delta["thinking"])
                out.append(ReasoningDelta(delta["thinking"]))
        elif kind == "signature_delta" and isinstance(delta.get("signature"), str):
            block.signature += delta["signature"]
        elif kind == "input_json_delta" and block.type == "tool_use":
            partial = delta.get("partial_json")
            if isinstance(partial, str) and partial:
                block.saw_json = True
                out.append(ToolCallArgsDelta(index, partial))
        else:
            self._notice_once(out, f"delta:{kind}", f"ignored content delta of type {kind!r}")

    def _block_stop(self, index: Any, out: list[StreamEvent]) -> None:
        block = self._blocks.get(index) if isinstance(index, int) else None
        if block is None or block.closed:
            return
        block.closed = True
        if block.type == "thinking":
            text = "".join(block.thinking or ())
            out.append(
                ReasoningBlockEnd(
                    ReasoningBlock("thinking", text, block.signature, "", *block.after)
                )
            )
        elif block.type == "redacted_thinking":
            out.append(
                ReasoningBlockEnd(
                    ReasoningBlock("redacted_thinking", "", "", block.signature, *block.after)
                )
            )
        elif block.type == "tool_use" and isinstance(index, int):
            # Input given whole in the start block (no deltas followed): that is the input.
            if not block.saw_json and isinstance(block.start_input, dict) and block.start_input:
                out.append(ToolCallArgsDelta(index, json.dumps(block.start_input)))
            out.append(ToolCallEnd(index))

    def _stop_details(self, details: Any, out: list[StreamEvent]) -> None:
        if not isinstance(details, dict):
            return
        explanation = details.get("explanation")
        if isinstance(explanation, str) and explanation:
            category = details.get("category")
            if isinstance(category, str) and category:
                explanation = f"{explanation} ({category})"
            out.append(TextDelta(f"\n\n{explanation}" if self._saw_text else explanation))
            self._saw_text = True

    def _notice_once(self, out: list[StreamEvent], key: str, message: str) -> None:
        if key not in self._noticed:
            self._noticed.add(key)
            out.append(Notice(key.split(":")[0], message))


def render_anthropic_messages(request: ModelRequest) -> list[dict[str, Any]]:
    """The engine's history as Messages API turns (user/assistant, merged when consecutive)."""
    turns: list[dict[str, Any]] = []
    messages = request.messages
    for position, message in enumerate(messages):
        role, blocks = _render_blocks(message, last=position == len(messages) - 1)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _render_blocks(message: Message, *, last: bool) -> tuple[str, list[dict[str, Any]]]:
    if message.role is Role.USER:
        return "user", [{"type": "text", "text": message.text}] if message.text else []
    if message.role is Role.TOOL:
        result: dict[str, Any] = {
            "type": "tool_result",
            "tool_use_id": message.tool_call_id,
            "content": message.text,
        }
        if message.is_error:
            result["is_error"] = True
        return "user", [result]
    # A final assistant message is a prefill (length continuation): the API rejects trailing
    # whitespace there.
    text = message.text.rstrip() if last else message.text
    calls = message.tool_calls
    blocks: list[dict[str, Any]] = []
    text_at = calls_at = 0  # how much of the text and of the calls is already rendered

    def content_up_to(text_end: int, calls_end: int) -> None:
        nonlocal text_at, calls_at
        if text_end > text_at and text[text_at:text_end]:
            blocks.append({"type": "text", "text": text[text_at:text_end]})
            text_at = text_end
        for call in calls[calls_at:calls_end]:
            blocks.append(
                {"type": "tool_use", "id": call.call_id, "name": call.name,
                 "input": _input(call.arguments)}
            )  # fmt: skip
        calls_at = max(calls_at, calls_end)

    # Thinking blocks go back verbatim and where they stood (the API checks both).
    for block in message.reasoning_blocks:
        if block.kind == "thinking" and block.signature:
            content_up_to(block.after_text, block.after_calls)
            blocks.append(
                {"type": "thinking", "thinking": block.text, "signature": block.signature}
            )
        elif block.kind == "redacted_thinking" and block.data:
            content_up_to(block.after_text, block.after_calls)
            blocks.append({"type": "redacted_thinking", "data": block.data})
    if not message.reasoning_blocks and message.reasoning and message.reasoning_signature:
        # a message stored before reasoning_blocks existed: its one signed block
        blocks.append(
            {
                "type": "thinking",
                "thinking": message.reasoning,
                "signature": message.reasoning_signature,
            }
        )
    content_up_to(len(text), len(calls))
    return "assistant", blocks


def _input(arguments: str) -> dict[str, Any]:
    # The API wants an object; arguments the model got wrong were already answered with an error
    # result, so an empty object keeps the history valid.
    try:
        parsed = _json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {}
    return parsed if isinstance(parsed, dict) else {}


def messages_url(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root + ("/messages" if root.endswith("/v1") else "/v1/messages")


class AnthropicProvider:
    """Messages API over an injected :class:`httpx.AsyncClient` (the caller owns and closes it)."""

    kind = PROVIDER

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str = "https://api.anthropic.com",
        api_key_env: str | None = None,
        anthropic_version: str = DEFAULT_ANTHROPIC_VERSION,
        extra_headers: Mapping[str, str] | None = None,
        *,
        default_max_tokens: int = 4096,
        idle_timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        request_deadline_s: float | None = None,
    ) -> None:
        if not base_url:
            raise ConfigurationError("anthropic: base_url is required")
        self._client = client
        self._url = messages_url(base_url)
        self._api_key_env = api_key_env
        self._version = anthropic_version
        self._extra_headers = dict(extra_headers or {})
        self._default_max_tokens = default_max_tokens
        self._idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._request_deadline_s = request_deadline_s

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model}
        body.update(request.options)
        body["messages"] = render_anthropic_messages(request)
        body["stream"] = True
        body["max_tokens"] = (
            request.max_tokens or body.get("max_tokens") or self._default_max_tokens
        )
        if request.system:
            body["system"] = request.system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": dict(t.parameters)}
                for t in request.tools
            ]
        return body

    def _headers(self) -> dict[str, str]:
        headers = {
            "accept": "text/event-stream",
            "anthropic-version": self._version,
            **self._extra_headers,
        }
        key = api_key_from_env(self._api_key_env)
        if key is not None:
            headers["x-api-key"] = key
        return headers

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        events = parsed_stream(
            self._client,
            self._url,
            provider=PROVIDER,
            headers=self._headers(),
            extra_headers=self._extra_headers,
            body=self.build_body(request),
            parser=AnthropicStreamParser(),
            idle_timeout_s=self._idle_timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            deadline_s=self._request_deadline_s,
        )
        async with contextlib.aclosing(events):  # a consumer's early stop closes the stream now
            async for event in events:
                yield event

    async def aclose(self) -> None:
        return None
