"""Estimates of the process memory a value holds, in bytes: what the memory budget
(``Limits.max_memory_bytes``) is accounted in.

Texts are measured with ``sys.getsizeof`` (O(1) for ``str``), so a string of four-byte characters
counts four bytes a character, as CPython stores it. Object headers, slots and containers are a
fixed allowance per value (measured on CPython 3.11, rounded up). A text referenced from two places
(the transcript entry and the event that committed it) is counted in each place that keeps it:
the estimates err high, never low.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any

from engine import Message
from runtime_server.model import (
    Diagnostic,
    Event,
    InputCommitted,
    MessageCommitted,
    ReasoningDelta,
    Run,
    RunFinished,
    RunQueued,
    RunStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptEntry,
)

_size = sys.getsizeof

# A Message (slots) with its empty strings, an entry or event around it, a Run record.
MESSAGE_OVERHEAD_BYTES = 200
ENTRY_OVERHEAD_BYTES = 200
EVENT_OVERHEAD_BYTES = 250
RUN_RECORD_BYTES = 700
TOOL_CALL_OVERHEAD_BYTES = 250


def text_bytes(text: str) -> int:
    """The memory of one string (its header included)."""
    return _size(text)


def message_bytes(message: Message) -> int:
    n = MESSAGE_OVERHEAD_BYTES + _size(message.text)
    if message.reasoning or message.tool_calls or message.reasoning_blocks:
        n += _extra_bytes(message)
    return n


def _extra_bytes(message: Message) -> int:
    n = _size(message.reasoning) + _size(message.reasoning_signature) if message.reasoning else 0
    for call in message.tool_calls:
        n += TOOL_CALL_OVERHEAD_BYTES + _size(call.arguments) + _size(call.name)
    for block in message.reasoning_blocks:
        n += TOOL_CALL_OVERHEAD_BYTES + _size(block.text) + _size(block.signature)
        n += _size(block.data)
    return n


_ENTRY_AND_MESSAGE = ENTRY_OVERHEAD_BYTES + MESSAGE_OVERHEAD_BYTES


def entry_bytes(entry: TranscriptEntry) -> int:
    # On the hot path (every transcript append): message_bytes, inlined.
    m = entry.message
    n = _ENTRY_AND_MESSAGE + _size(m.text)
    if m.reasoning or m.tool_calls or m.reasoning_blocks:
        n += _extra_bytes(m)
    return n


def run_input_bytes(run: Run) -> int:
    """The input text a run record carries (0 once it has been dropped)."""
    return _size(run.input_text) if run.input_text else 0


_PAYLOAD_BYTES: dict[type, Callable[[Any], int]] = {
    TextDelta: lambda p: _size(p.text),
    ReasoningDelta: lambda p: _size(p.text),
    InputCommitted: lambda p: entry_bytes(p.entry),
    MessageCommitted: lambda p: entry_bytes(p.entry),
    ToolCallStarted: lambda p: _size(p.arguments),
    ToolCallFinished: lambda p: _size(p.result),
    RunQueued: lambda p: RUN_RECORD_BYTES + run_input_bytes(p.run),
    RunStarted: lambda p: RUN_RECORD_BYTES + run_input_bytes(p.run),
    RunFinished: lambda p: RUN_RECORD_BYTES + run_input_bytes(p.run),
    Diagnostic: lambda p: _size(p.message),
}


def event_bytes(event: Event) -> int:
    f = _PAYLOAD_BYTES.get(type(event.payload))
    return EVENT_OVERHEAD_BYTES + (f(event.payload) if f is not None else 0)


def events_sizes(events: Sequence[Event]) -> list[int]:
    """``[event_bytes(e) for e in events]``, without a call per event (the memory store's hot
    path)."""
    get = _PAYLOAD_BYTES.get
    out = []
    for event in events:
        p = event.payload
        t = type(p)
        if t is TextDelta:  # most events: no call
            out.append(EVENT_OVERHEAD_BYTES + _size(p.text))  # type: ignore[union-attr]
        else:
            f = get(t)
            out.append(EVENT_OVERHEAD_BYTES + f(p) if f is not None else EVENT_OVERHEAD_BYTES)
    return out
