"""Engine errors.

::

    EngineError                      base of everything the engine raises
    ├── ProviderError                the provider failed (HTTP status, protocol, stream)
    │   ├── ProviderHTTPError        a non-2xx answer (status, provider message)
    │   ├── ProviderConnectionError  connect/read failure, reset, stream cut short, idle timeout
    │   ├── ProviderTimeoutError     the request outlived its total deadline (not retried)
    │   ├── ProviderProtocolError    a stream we cannot parse (malformed JSON, not an event stream)
    │   └── ProviderStreamError      the provider reported an error inside a 200 stream
    │                                (Anthropic ``event: error``, OpenAI ``{"error": ...}`` chunk)
    └── ConfigurationError           a profile or request the engine cannot run

Messages never contain secrets: providers pass the provider's own error text, never headers.
``retryable`` tells the retry policy (:mod:`engine._retry`) whether asking again may help.
"""

from __future__ import annotations

from engine._unicode import valid_text


class EngineError(Exception):
    """Base of all engine errors. ``code`` is a stable machine-readable reason."""

    code = "ENGINE_ERROR"

    def __init__(self, message: str) -> None:
        # a provider's error text can hold a lone surrogate (JSON \uXXXX): never past here
        message = valid_text(message)
        super().__init__(message)
        self.message = message


class ProviderError(EngineError):
    code = "PROVIDER_ERROR"

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class ProviderHTTPError(ProviderError):
    code = "PROVIDER_HTTP_ERROR"

    def __init__(
        self,
        message: str,
        *,
        status: int,
        retryable: bool = False,
        retry_after: float | None = None,
        provider_code: str = "",
    ) -> None:
        super().__init__(message, retryable=retryable)
        self.status = status
        self.retry_after = retry_after
        # The body's machine-readable ``error.code`` (e.g. OpenAI's "context_length_exceeded"),
        # which the message text does not carry.
        self.provider_code = provider_code


class ProviderConnectionError(ProviderError):
    code = "PROVIDER_CONNECTION_ERROR"

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message, retryable=retryable)


class ProviderProtocolError(ProviderError):
    code = "PROVIDER_PROTOCOL_ERROR"


class ConfigurationError(EngineError):
    code = "CONFIGURATION_ERROR"


class ProviderStreamError(ProviderError):
    """An error event inside a stream. ``error_type`` is the provider's own type string
    (``overloaded_error``, ``api_error``, ...); overloads and server errors are retryable."""

    code = "PROVIDER_STREAM_ERROR"

    def __init__(self, message: str, *, error_type: str = "", retryable: bool = False) -> None:
        super().__init__(message, retryable=retryable)
        self.error_type = error_type


class ProviderTimeoutError(ProviderError):
    """A request outlived its total deadline (``request_deadline_s``): the stream kept going —
    often with nothing but keep-alive comments — past the bound the profile sets. Not retryable:
    the next attempt would get the same bound, and the caller asked for an answer by then."""

    code = "PROVIDER_TIMEOUT"
