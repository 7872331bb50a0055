"""OpenAI Responses API, streaming (``kind = "openai_responses"``): where OpenAI's newest models
and their reasoning live.

Decisions worth knowing:

- ``base_url`` is the API root including its version, as for ``openai_chat``
  (``https://api.openai.com/v1``); the request goes to ``{base_url}/responses``.
- The request is stateless as far as the engine is concerned: the whole history goes in ``input``
  every time (no ``previous_response_id``), converted to Responses input items — user text as
  ``{"role": "user"}`` messages, assistant text as ``{"role": "assistant"}`` messages, tool calls as
  ``function_call`` items, tool results as ``function_call_output`` items, and the model's
  ``reasoning`` items sent back verbatim before the calls they led to (the API wants them there; a
  reasoning item without ``encrypted_content`` is sent back only when the request does not set
  ``store = false``, since the server must then find it by id). The system prompt goes in
  ``instructions``; ``max_tokens`` becomes ``max_output_tokens``; function tools are sent with
  ``strict = false`` (as Chat Completions treats them). ``options`` pass through
  (``reasoning = {effort, summary}``, ``store``, ``include``, ...).
- Streamed events read: ``response.output_text.delta`` (text), ``response.refusal.delta`` (text,
  stop reason REFUSAL), ``response.reasoning_summary_text.delta`` (reasoning; summary parts are
  joined by a blank line) and ``response.reasoning_text.delta`` (raw reasoning, open models),
  ``response.output_item.added`` / ``response.function_call_arguments.delta`` /
  ``response.output_item.done`` (tool calls, keyed by ``output_index``), ``response.completed`` and
  ``response.incomplete`` (usage, status: ``max_output_tokens`` → LENGTH, ``content_filter`` →
  CONTENT_FILTER). ``response.failed`` and ``error`` raise :class:`ProviderStreamError`
  (``server_error`` is retryable). Lifecycle events that carry nothing new are ignored; unknown
  event types (hosted tools: web search, file search, ...) get one :class:`Notice` each.
- A body that ends before ``response.completed`` / ``response.incomplete`` was cut short:
  :class:`ProviderConnectionError`, retried like any cut stream.
- Usage: ``input_tokens`` includes the cached part, ``output_tokens`` the reasoning
  (:func:`engine._usage.usage_from_responses`).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from engine import _json
from engine._errors import (
    ConfigurationError,
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderStreamError,
)
from engine._http import api_key_from_env, parsed_stream
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
from engine._usage import usage_from_responses

PROVIDER = "openai_responses"
INCOMPLETE_REASONS: Mapping[str, StopReason] = {
    "max_output_tokens": StopReason.LENGTH,
    "content_filter": StopReason.CONTENT_FILTER,
}
_RETRYABLE_CODES = frozenset({"server_error", "rate_limit_exceeded"})
# Events that carry nothing the deltas above did not already give.
_QUIET_EVENTS = frozenset(
    {
        "response.created", "response.in_progress", "response.queued",
        "response.content_part.added", "response.content_part.done",
        "response.output_text.done", "response.output_text.annotation.added",
        "response.refusal.done", "response.function_call_arguments.done",
        "response.reasoning_summary_part.added", "response.reasoning_summary_part.done",
        "response.reasoning_summary_text.done", "response.reasoning_text.done",
    }
)  # fmt: skip


@dataclass(slots=True)
class _Item:
    type: str
    saw_args: bool = False  # function_call: some arguments delta arrived
    parts: list[str] = field(default_factory=list)  # reasoning: text as streamed


class ResponsesStreamParser:
    """Pure: one parsed SSE event in, stream events out. ``finish()`` at end of body."""

    def __init__(self) -> None:
        self._items: dict[int, _Item] = {}
        self._ended = False
        self._refused = False
        self._part: tuple[Any, Any] | None = None  # (output_index, part) of the last reasoning
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
        if kind == "response.output_text.delta":
            delta = payload.get("delta")
            if isinstance(delta, str) and delta:
                out.append(TextDelta(delta))
        elif kind == "response.function_call_arguments.delta":
            self._arguments(payload, out)
        elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
            self._reasoning(payload, kind, out)
        elif kind == "response.output_item.added":
            self._item_added(payload, out)
        elif kind == "response.output_item.done":
            self._item_done(payload, out)
        elif kind == "response.refusal.delta":
            delta = payload.get("delta")
            if isinstance(delta, str) and delta:
                self._refused = True
                out.append(TextDelta(delta))
        elif kind in ("response.completed", "response.incomplete"):
            self._end(payload, out)
        elif kind == "response.failed":
            response = payload.get("response")
            error = response.get("error") if isinstance(response, dict) else None
            raise self._error(error if isinstance(error, dict) else {}, sse.data)
        elif kind == "error":
            nested = payload.get("error")  # some servers nest it: {"type": "error", "error": {}}
            raise self._error(nested if isinstance(nested, dict) else payload, sse.data)
        elif kind not in _QUIET_EVENTS:
            self._notice_once(out, f"event:{kind}", f"ignored unknown stream event {kind!r}")
        return out

    def finish(self) -> list[StreamEvent]:
        if not self._ended:
            raise ProviderConnectionError(f"{PROVIDER}: the stream ended before response.completed")
        return []

    def _item_added(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        index, item = payload.get("output_index"), payload.get("item")
        if not isinstance(index, int) or not isinstance(item, dict):
            self._notice_once(out, "malformed_item", "ignored a malformed output item")
            return
        kind = str(item.get("type"))
        self._items[index] = state = _Item(kind)
        if kind == "function_call":
            call_id, name = item.get("call_id"), item.get("name")
            out.append(
                ToolCallStart(
                    index,
                    call_id if isinstance(call_id, str) and call_id else new_call_id(),
                    name if isinstance(name, str) else "",
                )
            )
            arguments = item.get("arguments")
            if isinstance(arguments, str) and arguments:
                state.saw_args = True
                out.append(ToolCallArgsDelta(index, arguments))
        elif kind not in ("message", "reasoning"):
            # hosted tools (web_search_call, ...) run on OpenAI's side: not ours to run
            self._notice_once(out, f"item:{kind}", f"ignored output item of type {kind!r}")

    def _arguments(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        index, delta = payload.get("output_index"), payload.get("delta")
        item = self._items.get(index) if isinstance(index, int) else None
        if item is None or item.type != "function_call" or not isinstance(index, int):
            self._notice_once(out, "orphan_delta", "ignored arguments for an unknown call")
            return
        if isinstance(delta, str) and delta:
            item.saw_args = True
            out.append(ToolCallArgsDelta(index, delta))

    def _reasoning(self, payload: Mapping[str, Any], kind: str, out: list[StreamEvent]) -> None:
        delta = payload.get("delta")
        if not isinstance(delta, str) or not delta:
            return
        index = payload.get("output_index")
        part = (index, payload.get("summary_index", payload.get("content_index", 0)))
        if part != self._part:
            if self._part is not None:
                delta = "\n\n" + delta  # a new summary part, or a new reasoning item
            self._part = part
        item = self._items.get(index) if isinstance(index, int) else None
        if item is not None:
            item.parts.append(delta)
        out.append(ReasoningDelta(delta))

    def _item_done(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        index, item = payload.get("output_index"), payload.get("item")
        if not isinstance(index, int) or not isinstance(item, dict):
            return
        state = self._items.get(index)
        kind = item.get("type")
        if kind == "function_call" and state is not None:
            arguments = item.get("arguments")
            if not state.saw_args and isinstance(arguments, str) and arguments:
                out.append(ToolCallArgsDelta(index, arguments))  # given whole, never streamed
            out.append(ToolCallEnd(index))
        elif kind == "reasoning":
            text = "".join(state.parts).lstrip("\n") if state is not None else ""
            # The whole item goes back as it came (id, summary, encrypted_content).
            out.append(
                ReasoningBlockEnd(
                    ReasoningBlock("openai_reasoning", text=text, data=json.dumps(item))
                )
            )

    def _end(self, payload: Mapping[str, Any], out: list[StreamEvent]) -> None:
        self._ended = True
        response = payload.get("response")
        response = response if isinstance(response, dict) else {}
        usage = response.get("usage")
        if isinstance(usage, dict):
            out.append(UsageUpdate(usage_from_responses(usage)))
        else:
            out.append(Notice("no_usage", "the response ended without usage"))
        status = response.get("status")
        raw = status if isinstance(status, str) else ""
        if payload.get("type") == "response.incomplete" or raw == "incomplete":
            details = response.get("incomplete_details")
            why = details.get("reason") if isinstance(details, dict) else None
            raw = why if isinstance(why, str) else "incomplete"
            reason = INCOMPLETE_REASONS.get(raw, StopReason.UNKNOWN)
        elif any(item.type == "function_call" for item in self._items.values()):
            reason = StopReason.TOOL_USE
        else:
            reason = StopReason.END_TURN
        if self._refused:
            reason = StopReason.REFUSAL
        out.append(StreamStop(reason, raw))

    def _error(self, error: Mapping[str, Any], data: str) -> ProviderStreamError:
        code = error.get("code")
        code = code if isinstance(code, str) else ""
        message = error.get("message")
        text = message if isinstance(message, str) and message else data[:200]
        return ProviderStreamError(
            f"{PROVIDER}: error in the stream: {code + ': ' if code else ''}{text}",
            error_type=code,
            retryable=code in _RETRYABLE_CODES,
        )

    def _notice_once(self, out: list[StreamEvent], key: str, message: str) -> None:
        if key not in self._noticed:
            self._noticed.add(key)
            out.append(Notice(key.split(":")[0], message))


def render_responses_input(request: ModelRequest) -> list[dict[str, Any]]:
    """The engine's history as Responses input items."""
    stateless = request.options.get("store") is False
    items: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role is Role.USER:
            items.append({"role": "user", "content": message.text})
        elif message.role is Role.TOOL:
            items.append(
                {"type": "function_call_output", "call_id": message.tool_call_id,
                 "output": message.text}
            )  # fmt: skip
        else:
            items.extend(_assistant_items(message, stateless))
    return items


def _assistant_items(message: Message, stateless: bool) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    for block in message.reasoning_blocks:
        if block.kind != "openai_reasoning" or not (message.text or message.tool_calls):
            continue  # the API refuses a reasoning item without the item it led to
        item = _json.loads(block.data)
        if stateless and not item.get("encrypted_content"):
            continue  # the server keeps nothing: an id alone would not be found
        items.append(item)
    if message.text:
        items.append({"role": "assistant", "content": message.text})
    for call in message.tool_calls:
        items.append(
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments or "{}",
            }
        )
    return items


class OpenAIResponsesProvider:
    """Responses API over an injected :class:`httpx.AsyncClient` (the caller owns and closes it;
    :meth:`aclose` does nothing)."""

    kind = PROVIDER

    def __init__(
        self,
        client: httpx.AsyncClient,
        base_url: str,
        api_key_env: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
        *,
        idle_timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        request_deadline_s: float | None = None,
    ) -> None:
        if not base_url:
            raise ConfigurationError(f"{PROVIDER}: base_url is required")
        self._client = client
        self._url = base_url.rstrip("/") + "/responses"
        self._api_key_env = api_key_env
        self._extra_headers = dict(extra_headers or {})
        self._idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        self._request_deadline_s = request_deadline_s

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"model": request.model}
        body.update(request.options)
        body["input"] = render_responses_input(request)
        body["stream"] = True
        if request.system:
            body["instructions"] = request.system
        if request.max_tokens is not None:
            body["max_output_tokens"] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "name": tool.name,
                    "description": tool.description,
                    "parameters": dict(tool.parameters),
                    # The field is required; strict mode would refuse ordinary JSON schemas
                    # (it wants every property required and additionalProperties false).
                    "strict": False,
                }
                for tool in request.tools
            ]
        return body

    def _headers(self) -> dict[str, str]:
        headers = {"accept": "text/event-stream", **self._extra_headers}
        key = api_key_from_env(self._api_key_env)
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        return headers

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        events = parsed_stream(
            self._client,
            self._url,
            provider=PROVIDER,
            headers=self._headers(),
            extra_headers=self._extra_headers,
            body=self.build_body(request),
            parser=ResponsesStreamParser(),
            idle_timeout_s=self._idle_timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            deadline_s=self._request_deadline_s,
        )
        async with contextlib.aclosing(events):  # a consumer's early stop closes the stream now
            async for event in events:
                yield event

    async def aclose(self) -> None:
        return None
