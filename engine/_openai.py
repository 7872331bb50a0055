"""OpenAI Chat Completions, streaming (also vLLM, Ollama, llama.cpp, LM Studio, OpenRouter, ...).

Decisions worth knowing:

- ``base_url`` is the API root including its version, as the official SDK takes it
  (``https://api.openai.com/v1``, ``http://127.0.0.1:8080/v1``); the request goes to
  ``{base_url}/chat/completions``.
- Refusals (``delta.refusal``) are surfaced as text, so a user sees why the model declined, and the
  stop reason becomes :attr:`StopReason.REFUSAL` whatever ``finish_reason`` says.
- Reasoning comes as ``delta.reasoning_content`` (llama.cpp, DeepSeek, vLLM) or ``delta.reasoning``
  (Groq, OpenRouter, newer vLLM); when a delta carries both, ``reasoning_content`` wins (some
  servers send the same text twice). The field used is remembered on the message
  (:attr:`Message.reasoning_field`) and, with ``reasoning_field="auto"`` (the default), the
  reasoning goes back in that same field — Groq rejects ``reasoning_content``, DeepSeek requires it
  back after tool calls — and not at all for a message whose reasoning came from another kind of
  provider (Anthropic blocks, Responses items). A message with no recorded field (stored before
  fields were recorded) goes back as ``reasoning_content``, as it always did, so existing DeepSeek
  and llama.cpp histories keep working. ``"reasoning"`` / ``"reasoning_content"`` force one field,
  ``"none"`` never sends reasoning back.
- OpenRouter's ``delta.reasoning_details`` (structured, possibly signed or encrypted reasoning) are
  merged by ``index`` as the SDK merges them and kept as one :class:`ReasoningBlock`; in ``auto``
  they go back verbatim as the message's ``reasoning_details`` (instead of the plain text).
- Tool calls are identified by ``id`` when the delta has one (a new id starts a new call, even at
  an ``index`` already used: Gemini's OpenAI-compatible endpoint and some proxies send every call
  at index 0, or no index at all), else by ``index``, else they continue the last call. Gemini's
  ``extra_content`` (its thought signature) is kept on the call and sent back with it.
- Usage: see :func:`engine._usage.usage_from_openai` (xAI and Gemini count reasoning outside
  ``completion_tokens``; Groq may put a stream's usage in ``x_groq.usage``). A stream that
  finishes without the usage chunk we asked for gets a ``no_usage`` :class:`Notice` rather than
  silent zeros, and a ``total_tokens`` that neither convention explains a ``usage_mismatch`` one.
- ``n > 1`` is refused (one turn has one answer). A stream that carries several choices anyway is
  read for choice 0; the others are dropped with one :class:`Notice`.
- Usage needs ``stream_options.include_usage``; it arrives in a final chunk with ``choices: []``.
- Unknown chunk fields (``timings``, ``logprobs``, ``system_fingerprint``) are ignored; unknown
  non-empty *delta* fields get one :class:`Notice` each, since they may be content we don't show.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping
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
    ToolCall,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
    UsageUpdate,
)
from engine._usage import usage_from_openai

FINISH_REASONS: Mapping[str, StopReason] = {
    "stop": StopReason.END_TURN,
    "length": StopReason.LENGTH,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
}
_KNOWN_DELTA_KEYS = frozenset(
    {
        "role", "content", "refusal", "reasoning_content", "reasoning", "reasoning_details",
        "tool_calls", "function_call",
    }
)  # fmt: skip
REASONING_FIELDS = ("auto", "reasoning_content", "reasoning", "none")
_CONCAT = frozenset({"text", "summary", "data", "signature"})  # reasoning_details content
_RETRYABLE_STREAM_ERRORS = frozenset({"server_error", "overloaded_error", "api_error"})
PROVIDER = "openai_chat"


class OpenAIStreamParser:
    """Pure: one parsed SSE event in, stream events out. ``finish()`` at end of body."""

    def __init__(self) -> None:
        self._done = False  # saw "data: [DONE]"
        self._finish: str | None = None
        self._refused = False
        self._saw_usage = False
        self._started: set[int] = set()
        # Tool-call identity: our call number by provider id, by wire index, and the last one.
        self._by_id: dict[str, int] = {}
        self._by_index: dict[int, int] = {}
        self._current = -1
        self._details: list[dict[str, Any]] = []  # OpenRouter reasoning_details, merged
        self._noticed: set[str] = set()

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        if self._done:
            return []
        data = sse.data
        if data.strip() == "[DONE]":
            self._done = True
            return []
        try:
            chunk = _json.loads(data)
        except ValueError as exc:
            raise ProviderProtocolError(
                f"{PROVIDER}: malformed JSON in the stream: {data[:200]!r}"
            ) from exc
        if not isinstance(chunk, dict):
            raise ProviderProtocolError(f"{PROVIDER}: a stream chunk is not an object")
        if "error" in chunk:
            kind = error_type_from_json(chunk)
            raise ProviderStreamError(
                f"{PROVIDER}: error in the stream: {error_message_from_json(chunk) or data[:200]}",
                error_type=kind,
                retryable=kind in _RETRYABLE_STREAM_ERRORS,
            )
        out: list[StreamEvent] = []
        choices = chunk.get("choices") or []
        for choice in choices if isinstance(choices, list) else []:
            if not isinstance(choice, dict):
                continue
            if choice.get("index", 0) != 0:
                self._notice_once(
                    out, "extra_choices", "the stream carries several choices; only 0 is used"
                )
                continue
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            finish = choice.get("finish_reason")
            if isinstance(finish, str) and finish:
                self._finish = finish
                reason = FINISH_REASONS.get(finish, StopReason.UNKNOWN)
                if self._refused:
                    reason = StopReason.REFUSAL
                for index in sorted(self._started):
                    out.append(ToolCallEnd(index))
                if self._details:
                    out.append(self._details_block())
                out.append(StreamStop(reason, finish))
        usage = chunk.get("usage")
        if not isinstance(usage, dict):
            groq = chunk.get("x_groq")  # Groq puts the usage of a stream here
            usage = groq.get("usage") if isinstance(groq, dict) else None
        if isinstance(usage, dict):
            self._saw_usage = True
            normalised = usage_from_openai(usage)
            total = usage.get("total_tokens")
            if isinstance(total, int) and total > 0 and total != normalised.total_tokens:
                # a convention we do not know: say so rather than report a wrong total quietly
                self._notice_once(
                    out,
                    "usage_mismatch",
                    f"the provider's total_tokens ({total}) is not input + output "
                    f"({normalised.total_tokens})",
                )
            out.append(UsageUpdate(normalised))
        return out

    def finish(self) -> list[StreamEvent]:
        if self._finish is not None:
            if self._saw_usage:
                return []
            # We always ask for usage (stream_options.include_usage): zeros would be a lie.
            return [Notice("no_usage", "the stream ended without the usage it was asked for")]
        if not self._done:
            # No finish_reason and no [DONE]: the body ended early; asking again may help.
            raise ProviderConnectionError(f"{PROVIDER}: the stream ended before the model finished")
        return [
            *([self._details_block()] if self._details else []),
            Notice("no_finish_reason", "the stream ended with [DONE] but no finish_reason"),
            StreamStop(StopReason.UNKNOWN, ""),
        ]

    def _delta(self, delta: Mapping[str, Any], out: list[StreamEvent]) -> None:
        content = delta.get("content")
        if isinstance(content, str) and content:
            out.append(TextDelta(content))
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:
            self._refused = True
            out.append(TextDelta(refusal))
        reasoning = delta.get("reasoning_content")
        field = "reasoning_content"
        if not (isinstance(reasoning, str) and reasoning):
            reasoning = delta.get("reasoning")
            field = "reasoning"
        details = delta.get("reasoning_details")
        if isinstance(details, list) and details:
            shown = self._merge_details(details)
            if not (isinstance(reasoning, str) and reasoning) and shown:
                out.append(ReasoningDelta(shown))  # details only: show their text
        if isinstance(reasoning, str) and reasoning:
            out.append(ReasoningDelta(reasoning, "", field))
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if isinstance(call, dict):
                    self._tool_call(position, call, out)
        for key, value in delta.items():
            if key not in _KNOWN_DELTA_KEYS and value not in (None, "", [], {}):
                self._notice_once(out, f"delta:{key}", f"ignored unknown delta field {key!r}")

    def _tool_call(self, position: int, call: Mapping[str, Any], out: list[StreamEvent]) -> None:
        call_id = call.get("id")
        call_id = call_id if isinstance(call_id, str) and call_id else ""
        wire_index = call.get("index")
        if not isinstance(wire_index, int) or isinstance(wire_index, bool):
            wire_index = None
        if call_id and call_id in self._by_id:
            slot = self._by_id[call_id]
        elif call_id or (wire_index is not None and wire_index not in self._by_index):
            slot = len(self._started)  # a new id, or an index not seen yet: a new call
        elif wire_index is not None:
            slot = self._by_index[wire_index]
        elif self._current >= 0 and position == 0:
            slot = self._current  # neither id nor index: the call being streamed goes on
        else:
            slot = len(self._started)
        if wire_index is not None:
            self._by_index[wire_index] = slot  # a new id at a used index takes that index over
        self._current = slot
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        if slot not in self._started:
            self._started.add(slot)
            name = function.get("name")
            extra = call.get("extra_content")
            if not call_id:
                # a few servers omit ids; the history needs one to pair results with calls
                call_id = new_call_id()
            self._by_id[call_id] = slot
            out.append(
                ToolCallStart(
                    slot,
                    call_id,
                    name if isinstance(name, str) else "",
                    json.dumps(extra) if isinstance(extra, dict) and extra else "",
                )
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(ToolCallArgsDelta(slot, arguments))

    def _merge_details(self, details: list[Any]) -> str:
        """Merge OpenRouter ``reasoning_details`` deltas: entries with the same ``index`` are one
        entry whose content strings (``text``, ``summary``, ``data``, ``signature``) concatenate,
        as the official SDK merges list deltas; other fields (``format``, ``id``, ``type``) are
        replaced, where the SDK's generic merge would repeat a ``format`` sent with every delta.
        Returns the reasoning text the deltas carry (shown when no plain ``reasoning`` came)."""
        shown: list[str] = []
        for item in details:
            if not isinstance(item, dict):
                continue
            index = item.get("index")
            target = None
            if isinstance(index, int):
                target = next((d for d in self._details if d.get("index") == index), None)
            if target is None:
                self._details.append(dict(item))
            else:
                for key, value in item.items():
                    old = target.get(key)
                    if isinstance(old, str) and isinstance(value, str) and key in _CONCAT:
                        target[key] = old + value
                    elif value is not None and key != "index":
                        target[key] = value
            for key in ("text", "summary"):
                value = item.get(key)
                if isinstance(value, str) and value:
                    shown.append(value)
        return "".join(shown)

    def _details_block(self) -> ReasoningBlockEnd:
        details, self._details = self._details, []
        return ReasoningBlockEnd(ReasoningBlock("reasoning_details", data=json.dumps(details)))

    def _notice_once(self, out: list[StreamEvent], key: str, message: str) -> None:
        if key not in self._noticed:
            self._noticed.add(key)
            out.append(Notice(key.split(":")[0], message))


def new_call_id() -> str:
    """An id for a call the provider sent without one (the history pairs results by id)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def render_openai_messages(
    request: ModelRequest, *, reasoning_field: str = "auto"
) -> list[dict[str, Any]]:
    """The engine's history as Chat Completions messages (``reasoning_field``: see the module
    docstring; one of :data:`REASONING_FIELDS`)."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        out.append(_render_message(message, reasoning_field))
    return out


def _render_message(message: Message, reasoning_field: str) -> dict[str, Any]:
    if message.role is Role.USER:
        return {"role": "user", "content": message.text}
    if message.role is Role.TOOL:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    rendered: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    if reasoning_field == "auto":
        details = next((b for b in message.reasoning_blocks if b.kind == "reasoning_details"), None)
        if details is not None:
            rendered["reasoning_details"] = _json.loads(details.data)
        elif message.reasoning and message.reasoning_field:
            rendered[message.reasoning_field] = message.reasoning
        elif message.reasoning and not message.reasoning_blocks:
            # Stored before the field was recorded (or built by hand): what was always sent.
            rendered["reasoning_content"] = message.reasoning
    elif message.reasoning and reasoning_field != "none":
        rendered[reasoning_field] = message.reasoning
    if message.tool_calls:
        rendered["tool_calls"] = [_render_call(call) for call in message.tool_calls]
    elif rendered["content"] is None:
        rendered["content"] = ""
    return rendered


def _render_call(call: ToolCall) -> dict[str, Any]:
    rendered: dict[str, Any] = {
        "id": call.call_id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments or "{}"},
    }
    if call.extra:
        rendered["extra_content"] = _json.loads(call.extra)
    return rendered


class OpenAIChatProvider:
    """Chat Completions over an injected :class:`httpx.AsyncClient` (the caller owns and closes
    it; :meth:`aclose` does nothing)."""

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
        max_tokens_field: str = "max_tokens",
        reasoning_field: str = "auto",
        request_deadline_s: float | None = None,
    ) -> None:
        if not base_url:
            raise ConfigurationError("openai_chat: base_url is required")
        if reasoning_field not in REASONING_FIELDS:
            raise ConfigurationError(
                f"openai_chat: reasoning_field must be one of {', '.join(REASONING_FIELDS)}"
            )
        self._client = client
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key_env = api_key_env
        self._extra_headers = dict(extra_headers or {})
        self._idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        # OpenAI's newest models want "max_completion_tokens"; compatible servers "max_tokens".
        self._max_tokens_field = max_tokens_field
        self._reasoning_field = reasoning_field
        self._request_deadline_s = request_deadline_s

    def build_body(self, request: ModelRequest) -> dict[str, Any]:
        n = request.options.get("n", 1)
        if n != 1:
            raise ConfigurationError(
                f"{PROVIDER}: n={n!r} is not supported (a turn has one answer)"
            )
        body: dict[str, Any] = {"model": request.model}
        body.update(request.options)
        body["messages"] = render_openai_messages(request, reasoning_field=self._reasoning_field)
        body["stream"] = True
        stream_options = dict(body.get("stream_options") or {})
        stream_options["include_usage"] = True
        body["stream_options"] = stream_options
        if request.max_tokens is not None:
            body[self._max_tokens_field] = request.max_tokens
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.tools:
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": tool.name,
                        "description": tool.description,
                        "parameters": dict(tool.parameters),
                    },
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
            parser=OpenAIStreamParser(),
            idle_timeout_s=self._idle_timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            deadline_s=self._request_deadline_s,
        )
        async with contextlib.aclosing(events):  # a consumer's early stop closes the stream now
            async for event in events:
                yield event

    async def aclose(self) -> None:
        return None
