"""The echo provider's word-count memo under the context policy: a worker's prompt is a window
that slides over its history (oldest turns leave, new ones come), sometimes with the question of
an over-long turn kept ahead of it. The memo must count every such prompt exactly as a recount
would, while counting only what changed.

With many conversations at once (one per concurrent worker), a prompt finds its own
conversation's memo by its newest messages, whichever memo is most recent, and counts only what it
gained; with more conversations than the memo keeps, and with conversations that end, every count
is still exactly a recount, and the lookup table does not grow with conversations that are gone."""

from __future__ import annotations

import gc
import random

from engine import ContextPolicy, EchoProvider, Message, ModelRequest, Role, UsageUpdate, select

_MEMO_PROMPTS = 16  # conversations the memo keeps (engine._echo)


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


async def test_interleaved_conversations_each_continue_their_own_memo() -> None:
    provider = EchoProvider()
    histories: list[list[Message]] = [[Message(Role.USER, f"c{i} a b")] for i in range(16)]
    for history in histories:
        assert await prompt_words(provider, history) == recount(history)
    memos = {id(h[-1]): m for h, m in zip(reversed(histories), provider._counted, strict=True)}
    mine = [memos[id(h[-1])] for h in histories]
    for step in range(20):
        for i, history in enumerate(histories):
            history += [Message(Role.ASSISTANT, "x " * (step % 4)), Message(Role.USER, f"q{i} r")]
            assert await prompt_words(provider, history) == recount(history), (step, i)
            # the same memo, continued (counting only the two new messages), now most recent
            assert provider._counted[0] is mine[i]
    assert len(provider._counted) == 16


async def test_more_conversations_than_the_memo_keeps_and_ended_ones() -> None:
    rng = random.Random(15)
    provider = EchoProvider()
    live: list[list[Message]] = []
    for step in range(3000):
        roll = rng.random()
        if not live or roll < 0.05:
            live.append([Message(Role.USER, "w " * rng.randint(0, 9))])
        elif roll < 0.08:
            live.pop(rng.randrange(len(live)))  # a conversation ends: its messages are freed
            continue
        history = live[rng.randrange(len(live))]
        if rng.random() < 0.2:  # a retry sends the very same prompt again
            pass
        else:
            history += [Message(Role.ASSISTANT, "y " * rng.randint(0, 9))]
            history += [Message(Role.USER, "z " * rng.randint(0, 9))]
        if len(history) > 40 and rng.random() < 0.5:
            del history[: rng.randint(1, 10)]  # the window slides: oldest messages leave
        sent = history
        if len(history) > 3 and rng.random() < 0.1:
            # a prompt whose front is not its conversation's (a question put ahead of the tail)
            sent = [Message(Role.USER, "k " * rng.randint(0, 9)), *history[-3:]]
        assert await prompt_words(provider, sent) == recount(sent), step
        assert len(provider._counted) <= _MEMO_PROMPTS
        assert len(provider._by_last) <= 2 * _MEMO_PROMPTS + 1
    live.clear()
    gc.collect()
    assert await prompt_words(provider, [Message(Role.USER, "one two")]) == 2
