"""engine: one LLM turn — providers, stream parsing, the tool-call loop, retries, usage.

It knows nothing of the Runtime, gRPC or storage. Entry points:

- :func:`make_provider` builds a provider from a profile (kinds in :data:`PROVIDER_KINDS`);
- :func:`run_turn` runs one turn (streaming, tools, retries under ``TurnConfig.retry``);
- :class:`ContextPolicy` and :func:`select` choose the window of a long history a request sends;
- :class:`ScriptedProvider` is the fake beside the provider seam; :mod:`engine.testing` has a
  loopback HTTP server for tests;
- :class:`LocalModelServer` starts the bundled offline model (llama.cpp + SmolLM2-135M);
- :func:`install_log_redaction` attaches the filter that keeps live provider credentials out of
  log records to an application's handlers (see :mod:`engine._redact` for the whole rule);
- :mod:`engine.wire` has the providers' pure parts: stream parsers, renderers, stop-reason tables.
"""

from __future__ import annotations

from engine._accumulate import Accumulator
from engine._anthropic import AnthropicProvider
from engine._context import (
    COMPACTION_MODES,
    DEFAULT_MAX_TOKENS,
    ContextLengthExceededError,
    ContextPolicy,
    Window,
    estimate_tokens,
    fit_suffix,
    is_context_length_error,
    select,
    settle,
)
from engine._echo import EchoProvider
from engine._errors import (
    ConfigurationError,
    EngineError,
    ProviderConnectionError,
    ProviderError,
    ProviderHTTPError,
    ProviderProtocolError,
    ProviderStreamError,
    ProviderTimeoutError,
)
from engine._factory import PROVIDER_KINDS, make_provider
from engine._local import (
    LOCAL_MODELS,
    LocalModelError,
    LocalModelServer,
    local_model_unavailable,
)
from engine._openai import OpenAIChatProvider
from engine._provider import Provider
from engine._redact import (
    RedactingFilter,
    Redactor,
    SecretRegistry,
    install_log_redaction,
    request_secrets,
)
from engine._responses import OpenAIResponsesProvider
from engine._retry import RetryPolicy, backoff_delay, stream_with_retry
from engine._scripted import Pause, ScriptedProvider
from engine._sse import SSEDecoder, SSEEvent, SSEEventTooLarge
from engine._tools import Tool, ToolFunction, ToolRegistry
from engine._turn import CANCELLED_RESULT, Emit, TurnConfig, TurnResult, run_turn
from engine._types import (
    Message,
    MessageCompleted,
    ModelRequest,
    Notice,
    PartialDiscarded,
    PartialMessage,
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
    ToolCallFinished,
    ToolCallStart,
    ToolCallStarted,
    ToolSpec,
    TurnEvent,
    Usage,
    UsageReported,
    UsageUpdate,
)

__all__ = [
    "CANCELLED_RESULT",
    "COMPACTION_MODES",
    "DEFAULT_MAX_TOKENS",
    "LOCAL_MODELS",
    "PROVIDER_KINDS",
    "Accumulator",
    "AnthropicProvider",
    "ConfigurationError",
    "ContextLengthExceededError",
    "ContextPolicy",
    "EchoProvider",
    "Emit",
    "EngineError",
    "LocalModelError",
    "LocalModelServer",
    "Message",
    "MessageCompleted",
    "ModelRequest",
    "Notice",
    "OpenAIChatProvider",
    "OpenAIResponsesProvider",
    "PartialDiscarded",
    "PartialMessage",
    "Pause",
    "Provider",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderHTTPError",
    "ProviderProtocolError",
    "ProviderStreamError",
    "ProviderTimeoutError",
    "ReasoningBlock",
    "ReasoningBlockEnd",
    "ReasoningDelta",
    "RedactingFilter",
    "Redactor",
    "RetryPolicy",
    "Role",
    "SSEDecoder",
    "SSEEvent",
    "SSEEventTooLarge",
    "ScriptedProvider",
    "SecretRegistry",
    "StopReason",
    "StreamEvent",
    "StreamStop",
    "TextDelta",
    "Tool",
    "ToolCall",
    "ToolCallArgsDelta",
    "ToolCallEnd",
    "ToolCallFinished",
    "ToolCallStart",
    "ToolCallStarted",
    "ToolFunction",
    "ToolRegistry",
    "ToolSpec",
    "TurnConfig",
    "TurnEvent",
    "TurnResult",
    "Usage",
    "UsageReported",
    "UsageUpdate",
    "Window",
    "backoff_delay",
    "estimate_tokens",
    "fit_suffix",
    "install_log_redaction",
    "is_context_length_error",
    "local_model_unavailable",
    "make_provider",
    "request_secrets",
    "run_turn",
    "select",
    "settle",
    "stream_with_retry",
]
