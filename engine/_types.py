"""The engine's data model: messages, tool calls, usage, and the events of a stream and of a turn.

Everything here is a frozen value; providers produce :data:`StreamEvent`s, the turn loop turns them
into :data:`TurnEvent`s for its caller and into committed :class:`Message`s for the history.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.frozen import slot_init_all


class Role(enum.Enum):
    USER = "user"
    ASSISTANT = "assistant"
    TOOL = "tool"


class StopReason(enum.Enum):
    """Why a model stopped (normalised across providers), or why the turn loop did."""

    END_TURN = "end_turn"  # OpenAI "stop", Anthropic "end_turn"/"stop_sequence"
    LENGTH = "length"  # OpenAI "length", Anthropic "max_tokens"
    TOOL_USE = "tool_use"  # OpenAI "tool_calls", Anthropic "tool_use"
    CONTENT_FILTER = "content_filter"
    REFUSAL = "refusal"
    PAUSE = "pause"  # Anthropic "pause_turn"
    LIMIT_REACHED = "limit_reached"  # the turn loop hit max_tool_rounds
    UNKNOWN = "unknown"
    # The answer was cut short (an incomplete message, see Message.incomplete): the turn was
    # cancelled, or its host stopped (the engine itself reports CANCELLED; a host that was shutting
    # down records INTERRUPTED instead).
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool call the model asked for. ``arguments`` is the raw JSON text the model produced.

    ``extra`` is provider data attached to the call that must go back with it, as JSON text
    (Gemini's ``extra_content`` with its ``thought_signature``); empty for most providers."""

    call_id: str
    name: str
    arguments: str
    extra: str = ""


@dataclass(frozen=True, slots=True)
class ReasoningBlock:
    """One block of provider reasoning, kept verbatim so it can be sent back as it came.

    ``kind`` says whose and which: ``"thinking"`` (Anthropic, ``text`` + ``signature``),
    ``"redacted_thinking"`` (Anthropic, encrypted ``data``), ``"reasoning_details"`` (OpenRouter:
    ``data`` is the JSON array of ``reasoning_details``), ``"openai_reasoning"`` (OpenAI
    Responses: ``data`` is the JSON of the whole ``reasoning`` output item, ``text`` its summary).
    A provider sends back only the kinds it produced and skips the others.
    """

    kind: str
    text: str = ""
    signature: str = ""
    data: str = ""
    # Where the block stood among the message's other content (Anthropic interleaves thinking with
    # text and tool_use blocks): after this many characters of ``Message.text`` and this many of
    # its tool calls. Rendering puts it back there; 0, 0 is "before everything".
    after_text: int = 0
    after_calls: int = 0


@dataclass(frozen=True, slots=True, weakref_slot=True)
class Message:
    """One committed history entry: a user input, an assistant message, or a tool result.

    Weak references are allowed so that caches keyed by a message (the echo provider's prompt
    memo) never keep a conversation alive."""

    role: Role
    text: str = ""
    reasoning: str = ""
    # Anthropic thinking signature of a single-block message (histories written before
    # ``reasoning_blocks`` existed); new messages keep their blocks in ``reasoning_blocks``.
    reasoning_signature: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    # For role TOOL: which call this answers, and whether the result is an error.
    tool_call_id: str = ""
    tool_name: str = ""
    is_error: bool = False
    stop_reason: StopReason | None = None
    # An assistant message whose stream was cut (cancel, shutdown): what the model had said so far.
    # It is sent back in later requests like any assistant message.
    incomplete: bool = False
    # Every reasoning block of the message, in order, as the provider sent it (see ReasoningBlock).
    reasoning_blocks: tuple[ReasoningBlock, ...] = ()
    # The Chat Completions delta field the reasoning came in ("reasoning_content", "reasoning"):
    # the same provider wants it back in that field, and may reject the other one.
    reasoning_field: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    """Token counts, normalised across providers (see :mod:`engine._usage`).

    ``input_tokens`` is the whole prompt, cached parts included; ``cache_read_tokens`` and
    ``cache_write_tokens`` are the parts of it served from / written to a prompt cache.
    ``output_tokens`` is everything generated; ``reasoning_tokens`` the reasoning part of it.
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
        )

    def __sub__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens - other.input_tokens,
            self.output_tokens - other.output_tokens,
            self.cache_read_tokens - other.cache_read_tokens,
            self.cache_write_tokens - other.cache_write_tokens,
            self.reasoning_tokens - other.reasoning_tokens,
        )

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """What the model is told about a tool."""

    name: str
    description: str
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object"})


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """One request to a provider: the whole history, rendered by the provider for its wire
    format."""

    model: str
    messages: tuple[Message, ...]
    system: str = ""
    tools: tuple[ToolSpec, ...] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    # Provider-specific extra body fields (seed, top_p, ...), passed through as given.
    options: Mapping[str, Any] = field(default_factory=dict)


# --- events of one provider stream (provider -> accumulator) ---


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str


@dataclass(frozen=True, slots=True)
class ReasoningDelta:
    text: str
    signature: str = ""
    # Chat Completions: the delta field it came in (remembered on the message, see Message).
    field: str = ""


@dataclass(frozen=True, slots=True)
class ReasoningBlockEnd:
    """A reasoning block is complete (provider -> accumulator only; its text was already streamed
    as :class:`ReasoningDelta`): the accumulator keeps it for :attr:`Message.reasoning_blocks`."""

    block: ReasoningBlock


@dataclass(frozen=True, slots=True)
class ToolCallStart:
    index: int
    call_id: str
    name: str
    extra: str = ""  # see ToolCall.extra


@dataclass(frozen=True, slots=True)
class ToolCallArgsDelta:
    index: int
    delta: str


@dataclass(frozen=True, slots=True)
class ToolCallEnd:
    index: int


@dataclass(frozen=True, slots=True)
class UsageUpdate:
    """Usage so far for this stream (providers report cumulative figures; the last one wins)."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class StreamStop:
    reason: StopReason
    raw_reason: str = ""


@dataclass(frozen=True, slots=True)
class Notice:
    """Something a caller should know but that does not end the stream (unknown block type, ...)."""

    code: str
    message: str


StreamEvent = (
    TextDelta
    | ReasoningDelta
    | ReasoningBlockEnd
    | ToolCallStart
    | ToolCallArgsDelta
    | ToolCallEnd
    | UsageUpdate
    | StreamStop
    | Notice
)


# --- events of one turn (turn loop -> caller) ---


@dataclass(frozen=True, slots=True)
class ToolCallStarted:
    call_id: str
    name: str
    arguments: str


@dataclass(frozen=True, slots=True)
class ToolCallFinished:
    call_id: str
    name: str
    result: str
    is_error: bool


@dataclass(frozen=True, slots=True)
class MessageCompleted:
    """A message is final and belongs in the history (assistant message or tool result)."""

    message: Message


@dataclass(frozen=True, slots=True)
class UsageReported:
    """Usage of one model request, reported once it is known."""

    usage: Usage


@dataclass(frozen=True, slots=True)
class PartialDiscarded:
    """A stream failed midway and is being retried: observers drop the deltas since the last
    :class:`MessageCompleted` (the partial assistant message) and expect them again."""

    attempt: int
    reason: str


@dataclass(frozen=True, slots=True)
class PartialMessage:
    """The turn was cancelled while the model was streaming its answer: what had arrived so far.

    ``message`` is an assistant message marked ``incomplete`` with stop reason ``CANCELLED``,
    holding the text and reasoning received. Tool calls the stream had begun are left out: none of
    them ran (tools run only after the whole message), and their arguments may be cut mid-JSON.
    Emitted only when there is text or reasoning. It is *not* part of the history: the caller
    decides whether to keep it (the Runtime commits it to the transcript).
    """

    message: Message


TurnEvent = (
    TextDelta
    | ReasoningDelta
    | ToolCallStarted
    | ToolCallFinished
    | MessageCompleted
    | UsageReported
    | PartialDiscarded
    | PartialMessage
    | Notice
)

# every record above: built without an object.__setattr__ per field (engine.frozen)
slot_init_all(globals())
