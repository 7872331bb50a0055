"""Building a provider from a profile's settings, by kind."""

from __future__ import annotations

from collections.abc import Mapping

import httpx

from engine._anthropic import DEFAULT_ANTHROPIC_VERSION, AnthropicProvider
from engine._echo import EchoProvider
from engine._errors import ConfigurationError
from engine._openai import OpenAIChatProvider
from engine._provider import Provider
from engine._responses import OpenAIResponsesProvider

PROVIDER_KINDS = ("echo", "openai_chat", "anthropic", "openai_responses")


def make_provider(
    kind: str,
    *,
    client: httpx.AsyncClient | None = None,
    base_url: str = "",
    api_key_env: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
    idle_timeout_s: float = 60.0,
    connect_timeout_s: float = 10.0,
    anthropic_version: str = DEFAULT_ANTHROPIC_VERSION,
    default_max_tokens: int = 4096,
    echo_delay_s: float = 0.0,
    reasoning_field: str = "auto",
    request_deadline_s: float | None = None,
) -> Provider:
    """A provider of ``kind`` (one of :data:`PROVIDER_KINDS`).

    HTTP kinds need ``client`` (the caller owns it: one shared :class:`httpx.AsyncClient` per
    Runtime is the intent) and ``base_url``; ``api_key_env`` names the environment variable that
    holds the key, read at each request. ``echo`` ignores the HTTP settings.
    ``reasoning_field`` applies to ``openai_chat`` only (see :mod:`engine._openai`);
    ``request_deadline_s`` bounds each HTTP request as a whole (``None``: only the idle timeout).
    """
    if kind == "echo":
        return EchoProvider(delay_s=echo_delay_s)
    if kind not in PROVIDER_KINDS:
        raise ConfigurationError(
            f"unknown provider kind {kind!r}; expected one of {', '.join(PROVIDER_KINDS)}"
        )
    if client is None:
        raise ConfigurationError(f"provider kind {kind!r} needs an httpx.AsyncClient")
    if kind == "openai_chat":
        return OpenAIChatProvider(
            client,
            base_url,
            api_key_env,
            extra_headers,
            idle_timeout_s=idle_timeout_s,
            connect_timeout_s=connect_timeout_s,
            reasoning_field=reasoning_field,
            request_deadline_s=request_deadline_s,
        )
    if kind == "openai_responses":
        return OpenAIResponsesProvider(
            client,
            base_url,
            api_key_env,
            extra_headers,
            idle_timeout_s=idle_timeout_s,
            connect_timeout_s=connect_timeout_s,
            request_deadline_s=request_deadline_s,
        )
    return AnthropicProvider(
        client,
        base_url or "https://api.anthropic.com",
        api_key_env,
        anthropic_version,
        extra_headers,
        default_max_tokens=default_max_tokens,
        idle_timeout_s=idle_timeout_s,
        connect_timeout_s=connect_timeout_s,
        request_deadline_s=request_deadline_s,
    )
