"""The providers' wire formats as pure functions: no sockets, no retries, no Runtime.

Each provider is a thin HTTP shell around three pure parts, exported here so a translation can be
checked (and a new gateway adapted) without a server: a stream parser (decoded SSE events in,
:data:`engine.StreamEvent` s out), a request renderer (the engine's history as the provider's JSON
messages) and the tables that map the provider's stop reasons onto :class:`engine.StopReason`.
``parse_retry_after`` reads the back-off a server asks for (``Retry-After``, ``retry-after-ms``);
``DeltaRepair`` and ``valid_text`` make the text a provider sent valid Unicode (surrogates).

The implementations stay in the providers' private modules; this module is their public name.
"""

from __future__ import annotations

from engine._anthropic import STOP_REASONS as ANTHROPIC_STOP_REASONS
from engine._anthropic import AnthropicStreamParser, messages_url, render_anthropic_messages
from engine._http import parse_retry_after
from engine._openai import FINISH_REASONS as OPENAI_FINISH_REASONS
from engine._openai import OpenAIStreamParser, render_openai_messages
from engine._responses import ResponsesStreamParser, render_responses_input
from engine._unicode import DeltaRepair, valid_text

__all__ = [
    "ANTHROPIC_STOP_REASONS",
    "AnthropicStreamParser",
    "DeltaRepair",
    "OPENAI_FINISH_REASONS",
    "OpenAIStreamParser",
    "ResponsesStreamParser",
    "messages_url",
    "parse_retry_after",
    "render_anthropic_messages",
    "render_openai_messages",
    "render_responses_input",
    "valid_text",
]
