"""Context policy: which part of a long history is sent to the model, and what a provider's
context-length error means.

A worker lives for weeks; its committed history (the transcript) grows without bound and stays
complete. What is *sent* in each request is a window of it, chosen here:

- **Budget.** :class:`ContextPolicy` bounds the history sent by estimated tokens
  (``max_tokens``) and/or by messages (``max_messages``); 0 leaves that bound off. The system
  prompt, the profile's examples and the prefill are always sent and are not counted: the budget
  is for the history alone.
- **Estimate.** :func:`estimate_tokens` is deliberately cheap and tokenizer-free: one token per 4
  characters of text, reasoning and tool-call name/arguments (rounded up), plus 4 per message for
  the role and framing. English prose averages ~4 characters per token on the GPT/Claude/Llama
  tokenizers; code and non-Latin scripts take more tokens per character, which is why the
  default budget leaves room (and why a provider's context-length error is handled anyway).
- **Trimming.** Oldest turns go first: the window starts at a user message (a turn boundary).
  When the newest turn alone is over the budget (a long tool loop), the window starts inside it
  at a message that is not a tool result, and that turn's user message is kept ahead of it, so
  the model still sees the question. A tool call is never separated from its result: a cut never
  falls between an assistant message and the tool results that follow it. The newest message
  (with its tool call, if it is a result) is always sent, even alone over the budget.
- **Context-length errors.** :func:`is_context_length_error` recognises the providers' documented
  answers (OpenAI-compatible ``context_length_exceeded`` / "maximum context length", llama.cpp's
  ``exceed_context_size_error``, Anthropic's "prompt is too long"). The turn loop then halves the
  window it sent and retries once; a second refusal is :class:`ContextLengthExceededError`.

Selection is O(window): it walks back from the newest message and stops at the budget, so a
worker's per-run cost depends on what is sent, never on the length of its whole history.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from engine._errors import EngineError, ProviderError, ProviderHTTPError, ProviderStreamError
from engine._types import Message, Role

# Chosen to fit the smallest context windows in common use (32k tokens: Mistral 7B, Qwen 2.5 at
# its default, older GPT-4) with room for the system prompt, tools and the answer.
DEFAULT_MAX_TOKENS = 24_000
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
# "summarize" (the model summarises the trimmed part into a committed summary entry) is
# planned, not implemented: the only mode is "none".
COMPACTION_MODES = ("none",)


@dataclass(frozen=True, slots=True)
class ContextPolicy:
    """How much history one request carries (see the module docstring). 0 = no such bound."""

    max_tokens: int = DEFAULT_MAX_TOKENS
    max_messages: int = 0
    # What happens to the trimmed part: "none" (it is simply not sent; see COMPACTION_MODES).
    compaction: str = "none"

    @classmethod
    def unbounded(cls) -> ContextPolicy:
        return cls(max_tokens=0, max_messages=0)

    @property
    def bounded(self) -> bool:
        return self.max_tokens > 0 or self.max_messages > 0

    def describe(self) -> str:
        parts = []
        if self.max_tokens:
            parts.append(f"{self.max_tokens:,} estimated tokens")
        if self.max_messages:
            parts.append(f"{self.max_messages:,} messages")
        return " and ".join(parts) or "no budget"


def estimate_tokens(message: Message) -> int:
    """A cheap upper-ish estimate of the tokens ``message`` takes in a prompt (no tokenizer)."""
    chars = len(message.text) + len(message.reasoning)
    for call in message.tool_calls:
        chars += len(call.name) + len(call.arguments)
    return -(-chars // CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS


@dataclass(frozen=True, slots=True)
class Window:
    """The part of a history to send: ``messages[start:]``, preceded by ``messages[anchor]``
    when ``anchor`` >= 0 (the user message of a turn the window starts inside)."""

    start: int
    anchor: int = -1
    tokens: int = 0  # the estimate of what is sent

    def of(self, messages: Sequence[Message]) -> list[Message]:
        """The messages to send, copied once (a list slice is already a new list)."""
        sent = messages[self.start :] if self.start else messages[:]
        if not isinstance(sent, list):
            sent = list(sent)
        if self.anchor >= 0:
            sent.insert(0, messages[self.anchor])
        return sent

    @property
    def trimmed(self) -> bool:
        return self.start > 0


def select(messages: Sequence[Message], policy: ContextPolicy) -> Window:
    """The window of ``messages`` to send under ``policy`` (see the module docstring)."""
    if not policy.bounded or not messages:
        return Window(0)
    first, tokens = fit_suffix(messages, policy)
    return settle(messages, policy, first, tokens)


def fit_suffix(messages: Sequence[Message], policy: ContextPolicy) -> tuple[int, int]:
    """``(first, tokens)``: ``messages[first:]`` is the longest suffix within the budget (never
    empty: the newest message counts even alone over it), ``tokens`` its estimate. A caller that
    keeps this up to date as messages are appended passes it to :func:`settle` itself."""
    n = len(messages)
    max_tokens = policy.max_tokens or 1 << 62
    max_messages = policy.max_messages or 1 << 62
    tokens, first = 0, n
    while first > 0 and n - first < max_messages:
        cost = estimate_tokens(messages[first - 1])
        if tokens + cost > max_tokens and first < n:
            break
        tokens += cost
        first -= 1
    return first, tokens


def settle(messages: Sequence[Message], policy: ContextPolicy, first: int, tokens: int) -> Window:
    """The window, given the longest suffix ``messages[first:]`` (``tokens`` estimated) that fits
    the budget: moved to a turn boundary, or inside the newest turn with its question kept."""
    n = len(messages)
    if first <= 0:
        return Window(0, tokens=tokens)
    # Oldest turns first: start at the first user message at or after ``first``.
    start, fitted = first, tokens
    while start < n and messages[start].role is not Role.USER:
        tokens -= estimate_tokens(messages[start])
        start += 1
    if start < n:
        return Window(start, tokens=tokens)
    # The newest turn alone is over the budget: start inside it, never on a tool result (its call
    # would be cut off), and keep the turn's question ahead of the window.
    start, tokens = first, fitted
    while start < n and messages[start].role is Role.TOOL:
        tokens -= estimate_tokens(messages[start])
        start += 1
    while start == n or (start > 0 and messages[start].role is Role.TOOL):
        start -= 1  # nothing fits: the newest message, with the call it answers
        tokens += estimate_tokens(messages[start])
    if messages[start].role is Role.USER:
        return Window(start, tokens=tokens)  # the question itself, alone over the budget
    anchor = start - 1
    while anchor >= 0 and messages[anchor].role is not Role.USER:
        anchor -= 1
    if anchor >= 0:
        tokens += estimate_tokens(messages[anchor])
    return Window(start, anchor, tokens)


def tighter(policy: ContextPolicy, sent_tokens: int) -> ContextPolicy:
    """The policy for the one retry after a context-length error: half of what was sent."""
    half = max(1, sent_tokens // 2)
    limit = min(policy.max_tokens, half) if policy.max_tokens else half
    return ContextPolicy(limit, policy.max_messages, policy.compaction)


# Phrases and codes from the providers' documented error bodies (lower-cased).
_CONTEXT_MARKERS = (
    "context_length_exceeded",  # OpenAI (and compatibles) error.code
    "maximum context length",  # OpenAI, vLLM, DeepSeek, Groq: "This model's maximum context ..."
    "exceed_context_size_error",  # llama.cpp error.type
    "exceeds the available context size",  # llama.cpp error.message
    "prompt is too long",  # Anthropic: "prompt is too long: 208310 tokens > 200000 maximum"
    "context window",  # OpenAI Responses: "Your input exceeds the context window of this model"
)


def is_context_length_error(exc: BaseException) -> bool:
    """Whether a provider refused the request because the prompt does not fit the model."""
    if isinstance(exc, ProviderHTTPError):
        if exc.status not in (400, 413, 422):
            return False
        text = f"{exc.provider_code} {exc.message}".lower()
    elif isinstance(exc, ProviderStreamError):
        text = f"{exc.error_type} {exc.message}".lower()
    else:
        return False
    return any(marker in text for marker in _CONTEXT_MARKERS)


class ContextLengthExceededError(ProviderError):
    """The provider refused the history as too long, also after the window was trimmed harder.
    The message names the budget, so an operator knows which profile key to lower."""

    code = "CONTEXT_LENGTH_EXCEEDED"


def context_error(policy: ContextPolicy, sent_tokens: int, cause: EngineError) -> EngineError:
    return ContextLengthExceededError(
        f"the model's context is too small for this history even after trimming it to "
        f"~{sent_tokens:,} estimated tokens (profile budget: {policy.describe()}); lower "
        f"context_max_tokens or context_max_messages. Provider said: {cause.message}"
    )
