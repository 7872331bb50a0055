"""Pure accumulator: folds one provider stream's events into the final assistant message."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from engine import _json
from engine._types import (
    Message,
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
    Usage,
    UsageUpdate,
)
from engine._unicode import valid_text


@dataclass(slots=True)
class _PendingCall:
    call_id: str
    name: str
    arguments: list[str] = field(default_factory=list)
    extra: str = ""


class Accumulator:
    """Collects text, reasoning, tool calls (keyed by index: they may interleave), usage and the
    stop reason. ``message()`` builds the final :class:`Message`."""

    def __init__(self) -> None:
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._signature = ""
        self._field = ""
        self._blocks: list[ReasoningBlock] = []
        self._calls: dict[int, _PendingCall] = {}
        self.usage = Usage()
        self.stop_reason: StopReason | None = None
        self.notices: list[Notice] = []

    def add(self, event: StreamEvent) -> None:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
            if event.signature:
                self._signature = event.signature
            if event.field:
                self._field = event.field
        elif isinstance(event, ToolCallStart):
            call = self._calls.get(event.index)
            if call is None:
                self._calls[event.index] = _PendingCall(
                    event.call_id, event.name, extra=event.extra
                )
            else:  # deltas came first (or a repeated start): keep the arguments collected so far
                call.call_id = call.call_id or event.call_id
                call.name = call.name or event.name
                call.extra = call.extra or event.extra
        elif isinstance(event, ToolCallArgsDelta):
            call = self._calls.get(event.index)
            if call is None:  # a delta before its start: keep it rather than drop it
                call = self._calls[event.index] = _PendingCall("", "")
            call.arguments.append(event.delta)
        elif isinstance(event, ToolCallEnd):
            pass
        elif isinstance(event, ReasoningBlockEnd):
            self._blocks.append(event.block)
        elif isinstance(event, UsageUpdate):
            self.usage = event.usage
        elif isinstance(event, StreamStop):
            self.stop_reason = event.reason
        else:
            self.notices.append(event)

    @property
    def has_content(self) -> bool:
        return bool(self._text or self._reasoning or self._calls or self._blocks)

    def message(self) -> Message:
        """The message, every string valid Unicode (see engine._unicode): the deltas were repaired
        as they streamed; a tool call's arguments, ids and reasoning blocks are repaired here."""
        v = valid_text
        calls = tuple(
            ToolCall(v(c.call_id), v(c.name), v("".join(c.arguments)), v(c.extra))
            for _, c in sorted(self._calls.items())
        )
        reasoning = v("".join(self._reasoning))
        blocks = tuple(
            replace(b, text=v(b.text), signature=v(b.signature), data=v(b.data))
            for b in self._blocks
        )
        return Message(
            role=Role.ASSISTANT,
            text=v("".join(self._text)),
            reasoning=reasoning,
            reasoning_signature=v(self._signature),
            tool_calls=calls,
            stop_reason=self.stop_reason,
            reasoning_blocks=blocks,
            reasoning_field=self._field if reasoning else "",
        )


def invalid_arguments(message: Message) -> list[Notice]:
    """One :class:`Notice` per tool call whose arguments are not one JSON value — e.g. two calls
    a gateway sent under one index, glued into ``{...}{...}``. The call still gets an error result
    the model sees (the turn loop's job); the notice makes the cause visible to the operator."""
    notices: list[Notice] = []
    for call in message.tool_calls:
        if not call.arguments.strip():
            continue
        try:
            _json.loads(call.arguments)
        except ValueError as exc:
            notices.append(
                Notice(
                    "invalid_tool_arguments",
                    f"tool call {call.call_id} ({call.name}): arguments are not valid JSON "
                    f"({exc}); {len(call.arguments)} characters",
                )
            )
    return notices
