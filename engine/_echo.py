"""The built-in offline provider: streams the last user message back, word by word."""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import AsyncIterator, Sequence

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
# How many recent conversations the word-count memo keeps (one per active conversation, roughly).
_MEMO_PROMPTS = 16
# How far from a prompt's end the previous prompt's last message is looked for: the messages a
# conversation gains between two requests (an input; a tool round's call and results).
_MEMO_NEW = 64


class _Counted:
    """One conversation's memo: weak references to the messages of its prompts, in order, and
    running word counts (``cum[i]`` = words of the first ``i``); its last prompt is
    ``refs[start:]``. Only weak references: a deleted conversation is never kept alive."""

    __slots__ = ("cum", "refs", "start")

    def __init__(self) -> None:
        self.refs: list[weakref.ref[Message]] = []
        self.cum: list[int] = [0]
        self.start = 0

    def extend(self, messages: Sequence[Message]) -> None:
        refs, cum = self.refs, self.cum
        total = cum[-1]
        for m in messages:
            # str.split() splits on exactly the whitespace _WORD's \s matches: the same count.
            total += len(m.text.split())
            refs.append(weakref.ref(m))
            cum.append(total)

    def words(self) -> int:
        return self.cum[-1] - self.cum[self.start]

    def compact(self) -> None:
        """Forget what lies before the last prompt once it is most of the lists."""
        start = self.start
        if start > 64 and start * 2 > len(self.refs):
            base = self.cum[start]
            self.refs = self.refs[start:]
            self.cum = [c - base for c in self.cum[start:]]
            self.start = 0


class EchoProvider:
    """Echoes the last user message as one :class:`TextDelta` per word.

    ``delay_s`` sleeps before each word, so long runs can be shown and cancelled. With
    ``request.max_tokens`` set, the answer stops after that many words with ``LENGTH``.
    Token counts are word counts; the input count is reported before the first word.
    """

    kind = "echo"

    def __init__(self, *, delay_s: float = 0.0) -> None:
        self._delay_s = delay_s
        # Recent conversations, most recent first (see _Counted). A conversation's next prompt is
        # its previous one plus a few messages, maybe without its oldest ones (the context
        # policy's window slides): only the change is counted. Recounting the whole prompt made
        # every run O(history), and runs/s decayed as a worker's history grew.
        self._counted: list[_Counted] = []
        # id(a memo's last message) -> that memo: a prompt finds its conversation by looking up
        # its own newest messages (a few dict lookups), instead of every memo scanning the prompt
        # for its last message (16 conversations: up to 16 x 64 comparisons a request). A hit is
        # confirmed by identity (the weak reference), so a reused id never matches.
        self._by_last: dict[int, _Counted] = {}

    async def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]:
        text = next((m.text for m in reversed(request.messages) if m.role is Role.USER), "")
        words = _WORD.findall(text)
        limit = request.max_tokens
        stop = StopReason.END_TURN
        if limit is not None and len(words) > limit:
            words, stop = words[:limit], StopReason.LENGTH
        delay = self._delay_s
        # The prompt's tokens come first, as Anthropic reports them in message_start: a run
        # cancelled midway still counts what its prompt cost.
        prompt_words = self._prompt_words(request.messages)
        yield UsageUpdate(Usage(input_tokens=prompt_words))
        for word in words:
            # Always yield to the loop, like a real stream waiting on its socket: a provider that
            # never suspends would produce a whole run in one step and starve every subscriber.
            await asyncio.sleep(delay)
            yield TextDelta(word)
        yield UsageUpdate(Usage(input_tokens=prompt_words, output_tokens=len(words)))
        yield StreamStop(stop, stop.value)

    def _prompt_words(self, messages: Sequence[Message]) -> int:
        n = len(messages)
        if not n:
            return 0
        by_last = self._by_last
        # Where the previous prompt's last message stands now (identity: a message object sits
        # at one place of one conversation): among the prompt's newest messages.
        for p in range(n - 1, max(-1, n - 1 - _MEMO_NEW), -1):
            message = messages[p]
            memo = by_last.get(id(message))
            if memo is None or memo.refs[-1]() is not message:
                continue
            # messages[0..p] are refs[j..]: their two ends are the same objects, and both are a
            # contiguous stretch of one append-only conversation (after, at most, the kept
            # question of an over-long turn, which keeps them aligned), so the middles are too.
            j = len(memo.refs) - 1 - p
            if j < memo.start or memo.refs[j]() is not messages[0]:
                continue
            self._counted.remove(memo)
            del by_last[id(message)]
            memo.start = j
            memo.extend(messages[p + 1 :])
            memo.compact()
            self._remember(memo, messages[-1])
            return memo.words()
        memo = _Counted()
        memo.extend(messages)
        self._remember(memo, messages[-1])
        return memo.words()

    def _remember(self, memo: _Counted, last: Message) -> None:
        """``memo`` becomes the most recent; the least recent beyond ``_MEMO_PROMPTS`` go."""
        counted = self._counted
        counted.insert(0, memo)
        by_last = self._by_last
        by_last[id(last)] = memo
        for old in counted[_MEMO_PROMPTS:]:
            old_last = old.refs[-1]()
            if old_last is not None and by_last.get(id(old_last)) is old:
                del by_last[id(old_last)]
        del counted[_MEMO_PROMPTS:]
        if len(by_last) > 2 * _MEMO_PROMPTS:
            # entries of conversations that are gone (their message freed): keep the dict small
            live = {id(m.refs[-1]()): m for m in reversed(counted) if m.refs[-1]() is not None}
            by_last.clear()
            by_last.update(live)

    async def aclose(self) -> None:
        return None
