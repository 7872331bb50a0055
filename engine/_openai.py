"""OpenAI Chat Completions, streaming (also vLLM, Ollama, llama.cpp, LM Studio, OpenRouter, ...).

Decisions worth knowing:

- ``base_url`` is the API root including its version, as the official SDK takes it
  (``https://api.openai.com/v1``, ``http://127.0.0.1:8080/v1``); the request goes to
  ``{base_url}/chat/completions``.
- Refusals (``delta.refusal``) are surfaced as text, so a user sees why the model declined, and the
  stop reason becomes :attr:`StopReason.REFUSAL` whatever ``finish_reason`` says.
- Reasoning comes as ``delta.reasoning_content`` (llama.cpp, DeepSeek, vLLM) or ``delta.reasoning``
  (OpenRouter, newer vLLM); when a delta carries both, ``reasoning_content`` wins (some servers
  send the same text twice). Reasoning is sent back in history under ``reasoning_field``.
- ``n > 1`` is refused (one turn has one answer). A stream that carries several choices anyway is
  read for choice 0; the others are dropped with one :class:`Notice`.
- Usage needs ``stream_options.include_usage``; it arrives in a final chunk with ``choices: []``.
- Unknown chunk fields (``timings``, ``logprobs``, ``system_fingerprint``) are ignored; unknown
  non-empty *delta* fields get one :class:`Notice` each, since they may be content we don't show.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import httpx

from engine._errors import (
    ConfigurationError,
    EngineError,
    ProviderConnectionError,
    ProviderProtocolError,
    ProviderStreamError,
)
from engine._http import (
    api_key_from_env,
    error_message_from_json,
    error_type_from_json,
    post_sse,
    redact_error,
)
from engine._redact import Redactor, request_secrets, url_secrets
from engine._sse import SSEEvent
from engine._types import (
    Message,
    ModelRequest,
    Notice,
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
from engine._usage import usage_from_openai

FINISH_REASONS: Mapping[str, StopReason] = {
    "stop": StopReason.END_TURN,
    "length": StopReason.LENGTH,
    "tool_calls": StopReason.TOOL_USE,
    "function_call": StopReason.TOOL_USE,
    "content_filter": StopReason.CONTENT_FILTER,
}
_KNOWN_DELTA_KEYS = frozenset(
    {"role", "content", "refusal", "reasoning_content", "reasoning", "tool_calls", "function_call"}
)
_RETRYABLE_STREAM_ERRORS = frozenset({"server_error", "overloaded_error", "api_error"})
PROVIDER = "openai_chat"


class OpenAIStreamParser:
    """Pure: one parsed SSE event in, stream events out. ``finish()`` at end of body."""

    def __init__(self) -> None:
        self._done = False  # saw "data: [DONE]"
        self._finish: str | None = None
        self._refused = False
        self._started: set[int] = set()
        self._noticed: set[str] = set()

    def feed(self, sse: SSEEvent) -> list[StreamEvent]:
        if self._done:
            return []
        data = sse.data
        if data.strip() == "[DONE]":
            self._done = True
            return []
        try:
            chunk = json.loads(data)
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
                out.append(StreamStop(reason, finish))
        usage = chunk.get("usage")
        if isinstance(usage, dict):
            out.append(UsageUpdate(usage_from_openai(usage)))
        return out

    def finish(self) -> list[StreamEvent]:
        if self._finish is not None:
            return []
        if not self._done:
            # No finish_reason and no [DONE]: the body ended early; asking again may help.
            raise ProviderConnectionError(f"{PROVIDER}: the stream ended before the model finished")
        return [
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
        if not (isinstance(reasoning, str) and reasoning):
            reasoning = delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            out.append(ReasoningDelta(reasoning))
        calls = delta.get("tool_calls")
        if isinstance(calls, list):
            for position, call in enumerate(calls):
                if isinstance(call, dict):
                    self._tool_call(position, call, out)
        for key, value in delta.items():
            if key not in _KNOWN_DELTA_KEYS and value not in (None, "", [], {}):
                self._notice_once(out, f"delta:{key}", f"ignored unknown delta field {key!r}")

    def _tool_call(self, position: int, call: Mapping[str, Any], out: list[StreamEvent]) -> None:
        index = call.get("index", position)
        if not isinstance(index, int):
            index = position
        function = call.get("function")
        function = function if isinstance(function, dict) else {}
        if index not in self._started:
            self._started.add(index)
            call_id = call.get("id")
            name = function.get("name")
            out.append(
                ToolCallStart(
                    index,
                    # a few servers omit ids; the history needs one to pair results with calls
                    call_id if isinstance(call_id, str) and call_id else new_call_id(),
                    name if isinstance(name, str) else "",
                )
            )
        arguments = function.get("arguments")
        if isinstance(arguments, str) and arguments:
            out.append(ToolCallArgsDelta(index, arguments))

    def _notice_once(self, out: list[StreamEvent], key: str, message: str) -> None:
        if key not in self._noticed:
            self._noticed.add(key)
            out.append(Notice(key.split(":")[0], message))


def new_call_id() -> str:
    """An id for a call the provider sent without one (the history pairs results by id)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def render_openai_messages(
    request: ModelRequest, *, reasoning_field: str | None = "reasoning_content"
) -> list[dict[str, Any]]:
    """The engine's history as Chat Completions messages."""
    out: list[dict[str, Any]] = []
    if request.system:
        out.append({"role": "system", "content": request.system})
    for message in request.messages:
        out.append(_render_message(message, reasoning_field))
    return out


def _render_message(message: Message, reasoning_field: str | None) -> dict[str, Any]:
    if message.role is Role.USER:
        return {"role": "user", "content": message.text}
    if message.role is Role.TOOL:
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.text}
    rendered: dict[str, Any] = {"role": "assistant", "content": message.text or None}
    if message.reasoning and reasoning_field:
        rendered[reasoning_field] = message.reasoning
    if message.tool_calls:
        rendered["tool_calls"] = [
            {
                "id": call.call_id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments or "{}"},
            }
            for call in message.tool_calls
        ]
    elif rendered["content"] is None:
        rendered["content"] = ""
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
        reasoning_field: str | None = "reasoning_content",
    ) -> None:
        if not base_url:
            raise ConfigurationError("openai_chat: base_url is required")
        self._client = client
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._api_key_env = api_key_env
        self._extra_headers = dict(extra_headers or {})
        self._idle_timeout_s = idle_timeout_s
        self._connect_timeout_s = connect_timeout_s
        # OpenAI's newest models want "max_completion_tokens"; compatible servers "max_tokens".
        self._max_tokens_field = max_tokens_field
        self._reasoning_field = reasoning_field

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
        body = self.build_body(request)
        parser = OpenAIStreamParser()
        headers = self._headers()
        # Everything this stream lets out is redacted against the request's credentials.
        redact = Redactor((*request_secrets(headers, self._extra_headers), *url_secrets(self._url)))
        events = post_sse(
            self._client,
            self._url,
            provider=PROVIDER,
            headers=headers,
            body=body,
            idle_timeout_s=self._idle_timeout_s,
            connect_timeout_s=self._connect_timeout_s,
            redact=redact,
        )
        try:
            async for sse in events:
                for event in parser.feed(sse):
                    if type(event) is Notice and redact:
                        event = Notice(event.code, redact(event.message))
                    yield event
            for event in parser.finish():
                yield event
        except EngineError as exc:
            redact_error(exc, redact)
            raise
        finally:
            await events.aclose()  # close the HTTP stream now, not when garbage collected

    async def aclose(self) -> None:
        return None
