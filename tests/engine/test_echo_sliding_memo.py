"""The echo provider's word-count memo under the context policy: a worker's prompt is a window
that slides over its history (oldest turns leave, new ones come), sometimes with the question of
an over-long turn kept ahead of it. The memo must count every such prompt exactly as a recount
would, while counting only what changed."""

from __future__ import annotations

import random

from engine import ContextPolicy, EchoProvider, Message, ModelRequest, Role, UsageUpdate, select


async def prompt_words(provider: EchoProvider, messages: list[Message]) -> int:
    request = ModelRequest(model="echo", messages=tuple(messages))
    async for event in provider.stream(request):
        if isinstance(event, UsageUpdate):
            return event.usage.input_tokens
    raise AssertionError("no usage")


def recount(messages: list[Message]) -> int:
    return sum(len(m.text.split()) for m in messages)


async def test_sliding_windows_are_counted_exactly() -> None:
    rng = random.Random(8)
    provider = EchoProvider()
    histories: list[list[Message]] = [[] for _ in range(3)]  # interleaved conversations
    policy = ContextPolicy(max_tokens=120)
    for step in range(400):
        history = histories[step % 3]
        history.append(Message(Role.USER, "w " * rng.randint(0, 30)))
        if rng.random() < 0.3:  # a long answer: the next window may start inside a turn
            history.append(Message(Role.ASSISTANT, "x " * rng.randint(50, 200)))
        else:
            history.append(Message(Role.ASSISTANT, "y " * rng.randint(0, 20)))
        history.append(Message(Role.USER, "z " * rng.randint(0, 5)))
        sent = select(history, policy).of(history)
        assert await prompt_words(provider, sent) == recount(sent), step
        history.pop()  # the last input stands for a question: not kept


async def test_the_memo_counts_only_the_change() -> None:
    provider = EchoProvider()
    history = [Message(Role.USER, "a b c")]
    assert await prompt_words(provider, history) == 3
    memo = provider._counted[0]
    for i in range(200):
        history += [Message(Role.ASSISTANT, "d e"), Message(Role.USER, f"q{i}")]
        window = history[-10:]
        assert await prompt_words(provider, window) == recount(window)
        assert provider._counted[0] is memo  # the same conversation, continued
    assert len(memo.refs) < 150  # what slid out of the window is forgotten
