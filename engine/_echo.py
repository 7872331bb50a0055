"""The built-in offline provider: streams the last user message back, word by word."""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator

from engine._types import (
    Message,
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
# How many recent prompts the word-count memo keeps (one per active conversation, roughly).
_MEMO_PROMPTS = 16


class EchoProvider:
    """Echoes the last user message as one :class:`TextDelta` per word.

    ``delay_s`` sleeps before each word, so long runs can be shown and cancelled. With
    ``request.max_tokens`` set, the answer stops after that many words with ``LENGTH``.
    Token counts are word counts.
    """

    kind = "echo"

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self._delay_s = delay_s
        # Recent prompts with their word counts, most recent first: (length, a weak reference to
        # the prompt's last message, words). A conversation's next prompt is its previous one
        # plus a few messages, so only those are counted: recounting the whole history made
        # every run O(history) and runs/s decayed as a worker's history grew. Only a weak
        # reference is held, so a deleted (or evicted) conversation is not kept alive by the memo.
        self._counted: list[tuple[int, weakref.ref[Message], int]] = []

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
        prompt_words = self._prompt_words(request.messages)
        yield UsageUpdate(Usage(input_tokens=prompt_words, output_tokens=len(words)))
        yield StreamStop(stop, stop.value)

    def _prompt_words(self, messages: tuple[Message, ...]) -> int:
        counted = self._counted
        start = total = 0
        for i, (n, last, count) in enumerate(counted):
            # Identity with a live message: a history is built by appending, and a message object
            # sits at one place of one conversation, so the same object at the same position
            # means the same prefix. (A dead reference never matches: its conversation is gone.)
            if n <= len(messages) and messages[n - 1] is last():
                start, total = n, count
                del counted[i]
                break
        # str.split() splits on exactly the whitespace _WORD's \s matches: the same word count.
        total += sum(len(m.text.split()) for m in messages[start:])
        if messages:
            counted.insert(0, (len(messages), weakref.ref(messages[-1]), total))
            del counted[_MEMO_PROMPTS:]
        return total

    async def aclose(self) -> None:
        return None
