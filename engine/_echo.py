"""The built-in offline provider: streams the last user message back, word by word."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator

from engine._types import (
    ModelRequest,
    Role,
    StopReason,
    StreamEvent,
    StreamStop,
    TextDelta,
    Usage,
    UsageUpdate,
)

_WORD = re.compile(r"\s*\S+")


class EchoProvider:
    """Echoes the last user message as one :class:`TextDelta` per word.

    ``delay_s`` sleeps before each word, so long runs can be shown and cancelled. With
    ``request.max_tokens`` set, the answer stops after that many words with ``LENGTH``.
    Token counts are word counts.
    """

    kind = "echo"

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self._delay_s = delay_s

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        text = next((m.text for m in reversed(request.messages) if m.role is Role.USER), "")
        words = _WORD.findall(text)
        limit = request.max_tokens
        stop = StopReason.END_TURN
        if limit is not None and len(words) > limit:
            words, stop = words[:limit], StopReason.LENGTH
        delay = self._delay_s
        for word in words:
            # Always yield to the loop, like a real stream waiting on its socket: a provider that
            # never suspends would produce a whole run in one step and starve every subscriber.
            await asyncio.sleep(delay)
            yield TextDelta(word)
        prompt_words = sum(len(_WORD.findall(m.text)) for m in request.messages)
        yield UsageUpdate(Usage(input_tokens=prompt_words, output_tokens=len(words)))
        yield StreamStop(stop, stop.value)

    async def aclose(self) -> None:
        return None
