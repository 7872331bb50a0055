"""The httpx seam: the only module that touches httpx exceptions and raw HTTP responses.

Providers call :func:`post_sse`; it yields :class:`SSEEvent` s and raises only engine errors:

- a non-2xx answer becomes :class:`ProviderHTTPError` with the provider's own message (parsed from
  ``{"error": {"message": ...}}`` and similar bodies), the status, whether it is worth retrying
  (408, 409, 425, 429, 5xx — Anthropic's 529 included) and the ``Retry-After`` delay;
- httpx exceptions are translated in :func:`map_httpx_errors`, most specific first;
- a stream that sends nothing for ``idle_timeout_s`` fails with :class:`ProviderConnectionError`;
- a request whose body is still streaming ``deadline_s`` after it was sent fails with
  :class:`ProviderTimeoutError` (not retried). The idle timer alone cannot end a stream that only
  sends keep-alive comments: every comment is a byte that resets it.

Secrets (:mod:`engine._redact`): error messages carry the provider's body text and never request
headers; the request's credentials are redacted from the body text *before* it is cut to
``_MAX_ERROR_TEXT``, and from every stream event's data before a parser sees (and may quote) it.
The API key is read from the environment at request time by :func:`api_key_from_env`, stripped of
surrounding whitespace, and only put in headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import os
import time
from collections.abc import AsyncGenerator, Iterable, Iterator, Mapping
from typing import Any, Protocol

import httpx

from engine import _json
from engine._errors import (
    ConfigurationError,
    EngineError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderTimeoutError,
)
from engine._redact import Redactor, remember_request_secrets, request_secrets, url_secrets
from engine._sse import SSEDecoder, SSEEvent, SSEEventTooLarge
from engine._types import Notice, StreamEvent

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429})
_MAX_ERROR_BODY = 64 * 1024  # bytes of an error body we read; the rest is not worth waiting for
_MAX_ERROR_TEXT = 500  # characters of a non-JSON error body we quote


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or 500 <= status <= 599


@contextlib.contextmanager
def map_httpx_errors(provider: str) -> Iterator[None]:
    """Translate httpx exceptions into engine errors (most specific first, cause kept)."""
    try:
        yield
    except httpx.TimeoutException as exc:  # connect/read/write/pool timeouts
        raise ProviderConnectionError(f"{provider}: timed out ({type(exc).__name__})") from exc
    except httpx.RemoteProtocolError as exc:  # peer closed mid-body, malformed HTTP from server
        raise ProviderConnectionError(f"{provider}: connection broken: {exc}") from exc
    except httpx.NetworkError as exc:  # connect/read/write/close errors: refused, reset, ...
        raise ProviderConnectionError(f"{provider}: network error: {exc}") from exc
    except httpx.UnsupportedProtocol as exc:
        raise ConfigurationError(f"{provider}: unsupported URL scheme: {exc}") from exc
    except httpx.InvalidURL as exc:
        raise ConfigurationError(f"{provider}: invalid URL: {exc}") from exc
    except httpx.DecodingError as exc:
        raise ProviderProtocolError(f"{provider}: cannot decode the response: {exc}") from exc
    except httpx.HTTPError as exc:  # anything else httpx raises (local protocol errors, ...)
        raise ProviderError(f"{provider}: HTTP failure: {type(exc).__name__}: {exc}") from exc


def api_key_from_env(env_var: str | None) -> str | None:
    """The API key named by ``env_var``, read now (keys can rotate). ``None`` means no auth.

    Surrounding whitespace is stripped: a key saved with ``echo`` into an env file ends with a
    newline, which no API key contains and no HTTP header may carry. A key that still holds a
    control or non-ASCII character is refused; the error names the variable, never the value.
    """
    if env_var is None:
        return None
    key = os.environ.get(env_var, "").strip()
    if not key:
        # The variable's name is configuration, not a secret: it is safe to show.
        raise ConfigurationError(f"environment variable {env_var} (the API key) is not set")
    if not all(" " <= c <= "~" for c in key):
        raise ConfigurationError(
            f"environment variable {env_var} (the API key) contains a control or non-ASCII "
            "character, which an HTTP header cannot carry (the value is not shown)"
        )
    return key


def parse_retry_after(headers: httpx.Headers, *, now: float | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms`` (OpenAI) or ``Retry-After`` (seconds or a date)."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            return max(0.0, float(raw_ms) / 1000)
        except ValueError:
            pass
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def error_message_from_body(body: bytes, redact: Redactor | None = None) -> str:
    """The provider's own error text from an error body, in any of the usual shapes, with the
    request's secrets redacted before the text is cut (a key straddling the cut would leak)."""
    text = body.decode("utf-8", errors="replace").strip()
    try:
        from_json = error_message_from_json(_json.loads(text))
    except ValueError:
        from_json = ""
    message = from_json or text
    if redact:
        message = redact(message)
    if not from_json:
        message = message[:_MAX_ERROR_TEXT]  # only now: the redaction saw the whole text
    return message or "(empty body)"


def error_message_from_json(parsed: Any) -> str:
    """``{"error": {"message", "type"}}`` (OpenAI, Anthropic, llama.cpp), ``{"error": "..."}``,
    ``{"message": ...}`` or ``{"detail": ...}``; empty string when none applies."""
    if not isinstance(parsed, dict):
        return ""
    error = parsed.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        kind = error.get("type")
        if isinstance(message, str) and message:
            return f"{kind}: {message}" if isinstance(kind, str) and kind else message
    if isinstance(error, str) and error:
        return error
    for key in ("message", "detail"):
        value = parsed.get(key)
        if isinstance(value, str) and value:
            return value
    return ""


def error_code_from_body(body: bytes) -> str:
    """``error.code`` of a JSON error body when it is a string (OpenAI's
    ``context_length_exceeded``), else empty."""
    try:
        parsed = _json.loads(body)
    except ValueError:
        return ""
    error = parsed.get("error") if isinstance(parsed, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code[:100] if isinstance(code, str) else ""


def error_type_from_json(parsed: Any) -> str:
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return str(error["type"])
    return ""


async def _read_bounded(response: httpx.Response, idle_timeout_s: float) -> bytes:
    parts: list[bytes] = []
    size = 0
    chunks = response.aiter_bytes()
    while size < _MAX_ERROR_BODY:
        try:
            async with asyncio.timeout(idle_timeout_s):
                chunk = await anext(chunks)
        except (StopAsyncIteration, TimeoutError):
            break
        parts.append(chunk)
        size += len(chunk)
    return b"".join(parts)[:_MAX_ERROR_BODY]


def redact_error(exc: EngineError, redact: Redactor) -> EngineError:
    """``exc`` with the secrets redacted from its message (in place: the class, attributes and
    cause stay). Providers pass every error they raise through this."""
    if redact:
        exc.message = redact(exc.message)
        exc.args = (exc.message,)
    return exc


def _clean_event(sse: SSEEvent, redact: Redactor) -> SSEEvent:
    # Parsers quote event data in their errors (a malformed line, an error event): redact the
    # whole data first. Whole secrets only: this runs for every event of every stream.
    data, event = redact.quick(sse.data), redact.quick(sse.event)
    if data is sse.data and event is sse.event:
        return sse
    return SSEEvent(event, data, sse.id, sse.retry)


async def post_sse(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    body: Mapping[str, Any],
    idle_timeout_s: float,
    connect_timeout_s: float,
    redact: Redactor | None = None,
    deadline_s: float | None = None,
) -> AsyncGenerator[SSEEvent, None]:
    """POST ``body`` as JSON and yield the answer's server-sent events.

    ``redact`` holds the request's credentials (default: those of ``headers``); they are
    registered for log redaction and removed from error text and event data.

    ``deadline_s`` bounds the whole request, from now to the last byte of the body (``None``: no
    bound beyond the idle timeout). It is checked at every read of the body, never across a
    ``yield``, so the consumer's own awaits are never cancelled by it.

    The response is closed when the iterator finishes, fails, is closed or is cancelled (the
    ``async with`` below unwinds in every case), which closes the connection of a cut stream.
    """
    timeout = httpx.Timeout(idle_timeout_s, connect=connect_timeout_s)
    loop = asyncio.get_running_loop()
    deadline = None if deadline_s is None else loop.time() + deadline_s
    if redact is None:
        redact = Redactor(request_secrets(headers))
    remember_request_secrets(redact)
    with map_httpx_errors(provider):
        async with client.stream(
            "POST", url, headers=dict(headers), json=dict(body), timeout=timeout
        ) as response:
            if not 200 <= response.status_code < 300:
                raw = await _read_bounded(response, idle_timeout_s)
                status = response.status_code
                message = error_message_from_body(raw, redact)
                raise ProviderHTTPError(
                    f"{provider}: HTTP {status}: {message}",
                    status=status,
                    retryable=is_retryable_status(status),
                    retry_after=parse_retry_after(response.headers),
                    provider_code=error_code_from_body(raw),
                )
            content_type = response.headers.get("content-type", "")
            if "json" in content_type:
                # Some servers answer a streaming request with a plain JSON error and status 200.
                raw = await _read_bounded(response, idle_timeout_s)
                message = error_message_from_body(raw, redact)
                raise ProviderProtocolError(
                    f"{provider}: expected an event stream, got JSON: {message}"
                )
            if "html" in content_type:
                # A web page (a proxy's sign-in page, a captive portal, a base_url naming a site
                # rather than its API): before, it read as a stream that "ended before the model
                # finished", a connection error, and was retried. The page itself is not read.
                raise ProviderProtocolError(
                    f"{provider}: expected an event stream, got a web page "
                    f"({content_type[:80]}): is base_url the API's address?"
                )
            decoder = SSEDecoder()
            chunks = response.aiter_bytes()
            while True:
                wait = idle_timeout_s
                if deadline is not None:
                    wait = min(wait, deadline - loop.time())
                try:
                    # Idle timeout at the asyncio level, so it holds for any transport.
                    async with asyncio.timeout(wait):
                        chunk = await anext(chunks)
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    if wait < idle_timeout_s:  # the deadline was the nearer bound
                        raise ProviderTimeoutError(
                            f"{provider}: the request did not finish within its deadline of "
                            f"{deadline_s:g}s"
                        ) from exc
                    raise ProviderConnectionError(
                        f"{provider}: the stream sent nothing for {idle_timeout_s:g}s"
                    ) from exc
                try:
                    events = decoder.feed(chunk)
                except SSEEventTooLarge as exc:
                    raise ProviderProtocolError(f"{provider}: {exc}") from None
                for event in events:
                    yield _clean_event(event, redact) if redact else event
            for event in decoder.flush():
                yield _clean_event(event, redact) if redact else event


class EventParser(Protocol):
    """A provider's pure stream parser: server-sent events in, engine stream events out."""

    def feed(self, sse: SSEEvent) -> Iterable[StreamEvent]: ...

    def finish(self) -> Iterable[StreamEvent]: ...


async def parsed_stream(
    client: httpx.AsyncClient,
    url: str,
    *,
    provider: str,
    headers: Mapping[str, str],
    extra_headers: Mapping[str, str],
    body: Mapping[str, Any],
    parser: EventParser,
    idle_timeout_s: float,
    connect_timeout_s: float,
    deadline_s: float | None,
) -> AsyncGenerator[StreamEvent, None]:
    """One streamed provider request as engine events: :func:`post_sse` through ``parser``.

    The one place where every provider's stream is redacted against the request's credentials
    (header values, configured extra headers, a password in the URL): notices and errors are
    cleaned before they leave. The HTTP stream is closed in ``finally``, so a consumer that stops
    early (a cancel) closes it at once, not when the generator is collected.
    """
    redact = Redactor((*request_secrets(headers, extra_headers), *url_secrets(url)))
    events = post_sse(
        client,
        url,
        provider=provider,
        headers=headers,
        body=body,
        idle_timeout_s=idle_timeout_s,
        connect_timeout_s=connect_timeout_s,
        redact=redact,
        deadline_s=deadline_s,
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
