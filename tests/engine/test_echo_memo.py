"""The echo provider's prompt memo (word counts of recent prompts, so a growing conversation is
not recounted every run) must not keep conversations alive: a deleted worker's history has to be
freed, whatever the memo saw. It also still counts right when a prompt is rebuilt from new
message objects (a history read back from the store)."""

from __future__ import annotations

import gc
import weakref

from engine import EchoProvider, Message, ModelRequest, Role, Usage, UsageUpdate


async def _prompt_words(provider: EchoProvider, messages: tuple[Message, ...]) -> int:
    usage = Usage()
    async for event in provider.stream(ModelRequest(model="echo", messages=messages)):
        if isinstance(event, UsageUpdate):
            usage = event.usage
    return usage.input_tokens


async def test_memo_keeps_no_conversation_alive() -> None:
    provider = EchoProvider()
    history = [Message(Role.USER, "one two three")]
    assert await _prompt_words(provider, tuple(history)) == 3
    history += [Message(Role.ASSISTANT, "one two three"), Message(Role.USER, "four")]
    assert await _prompt_words(provider, tuple(history)) == 7  # counted from the memo onwards
    refs = [weakref.ref(m) for m in history]
    del history
    gc.collect()
    assert [r() for r in refs] == [None, None, None], "the memo kept a conversation alive"


async def test_memo_counts_rebuilt_and_unrelated_prompts_right() -> None:
    provider = EchoProvider()
    first = (Message(Role.USER, "a b"), Message(Role.ASSISTANT, "a b"), Message(Role.USER, "c"))
    assert await _prompt_words(provider, first) == 5
    rebuilt = (*(Message(m.role, m.text) for m in first), Message(Role.ASSISTANT, "c d e"))
    assert await _prompt_words(provider, rebuilt) == 8  # equal values, new objects: recounted
    other = (Message(Role.USER, "x"),)
    assert await _prompt_words(provider, other) == 1
    longer = (*first, Message(Role.ASSISTANT, "c"), Message(Role.USER, "d e f g"))
    assert await _prompt_words(provider, longer) == 10  # memo hit on ``first``, then 5 more
