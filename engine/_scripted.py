"""The fake beside the provider seam: a provider that plays back scripted streams.

Each call to :meth:`ScriptedProvider.stream` consumes the next script: a sequence of
:data:`StreamEvent` s, exceptions (raised at that point of the stream) and :class:`Pause` s (sleep,
so a test can cancel mid-stream). Requests are recorded for assertions; ``closed`` counts streams
that were closed, finished or not, so tests can check nothing is left open.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from engine._types import (
    ModelRequest,
    StopReason,
    StreamEvent,
    StreamStop,
    TextDelta,
    ToolCallArgsDelta,
    ToolCallEnd,
    ToolCallStart,
    Usage,
    UsageUpdate,
)


@dataclass(frozen=True, slots=True)
class Pause:
    seconds: float


ScriptItem = StreamEvent | BaseException | Pause


class ScriptedProvider:
    kind = "scripted"

    def __init__(self, scripts: Iterable[Iterable[ScriptItem]] = ()) -> None:
        self._scripts: deque[list[ScriptItem]] = deque(list(s) for s in scripts)
        self.requests: list[ModelRequest] = []
        self.opened = 0
        self.closed = 0

    def add(self, *items: ScriptItem) -> None:
        self._scripts.append(list(items))

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        self.requests.append(request)
        if not self._scripts:
            raise AssertionError("ScriptedProvider: no script left for this request")
        script = self._scripts.popleft()
        self.opened += 1
        try:
            for item in script:
                if isinstance(item, Pause):
                    await asyncio.sleep(item.seconds)
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self.closed += 1

    async def aclose(self) -> None:
        return None


def text_reply(text: str, stop: StopReason = StopReason.END_TURN) -> list[ScriptItem]:
    """A script: ``text`` as one delta, some usage, then ``stop``."""
    return [TextDelta(text), UsageUpdate(Usage(input_tokens=1, output_tokens=1)), StreamStop(stop)]


def tool_reply(*calls: tuple[str, str, str]) -> list[ScriptItem]:
    """A script: the model asks for ``(call_id, name, arguments)`` calls, then stops for tools."""
    items: list[ScriptItem] = []
    for index, (call_id, name, arguments) in enumerate(calls):
        items += [
            ToolCallStart(index, call_id, name),
            ToolCallArgsDelta(index, arguments),
            ToolCallEnd(index),
        ]
    items += [UsageUpdate(Usage(input_tokens=1, output_tokens=1)), StreamStop(StopReason.TOOL_USE)]
    return items
