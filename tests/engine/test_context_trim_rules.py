"""The context policy's trim rules (issue 14 item 8), as pure functions: the budget is respected,
oldest turns go first, a tool call is never separated from its result, the newest turn's question
is kept, and the estimate is the documented one."""

from __future__ import annotations

import random

import pytest

from engine import ContextPolicy, Message, Role, ToolCall, estimate_tokens, select

U, A, T = Role.USER, Role.ASSISTANT, Role.TOOL


def user(text: str = "question " * 5) -> Message:
    return Message(U, text)


def answer(text: str = "answer " * 5) -> Message:
    return Message(A, text)


def call(cid: str) -> Message:
    return Message(A, "", tool_calls=(ToolCall(cid, "clock", '{"tz": "UTC"}'),))


def result(cid: str) -> Message:
    return Message(T, "12:00", tool_call_id=cid, tool_name="clock")


def conversation(turns: int, *, tools: bool = True) -> list[Message]:
    out: list[Message] = []
    for i in range(turns):
        out.append(user(f"question {i} " * 4))
        if tools and i % 2:
            out += [call(f"c{i}"), result(f"c{i}")]
        out.append(answer(f"answer {i} " * 4))
    return out


def check_valid(sent: list[Message]) -> None:
    """Every tool result follows the assistant message that asked for it, and every call has
    its result: the pairs are never split."""
    open_calls: set[str] = set()
    for m in sent:
        if m.role is T:
            assert m.tool_call_id in open_calls, f"result {m.tool_call_id} without its call"
            open_calls.discard(m.tool_call_id)
        else:
            assert not open_calls, f"calls {open_calls} without their results"
            open_calls = {c.call_id for c in m.tool_calls}


def test_the_estimate_is_four_characters_a_token_plus_framing() -> None:
    assert estimate_tokens(Message(U, "")) == 4
    assert estimate_tokens(Message(U, "abcd")) == 5
    assert estimate_tokens(Message(U, "abcde")) == 6  # rounded up
    tool = Message(A, "", reasoning="ab", tool_calls=(ToolCall("x", "clock", "{}"),))
    assert estimate_tokens(tool) == 4 + 3  # "ab" + "clock" + "{}" = 9 characters


def test_an_unbounded_policy_sends_everything() -> None:
    history = conversation(50)
    window = select(history, ContextPolicy.unbounded())
    assert window.of(history) == history


def test_a_history_under_budget_is_sent_whole() -> None:
    history = conversation(3)
    window = select(history, ContextPolicy(max_tokens=10_000))
    assert window.start == 0
    assert window.of(history) == history
    assert window.tokens == sum(map(estimate_tokens, history))


@pytest.mark.parametrize("budget", [20, 50, 100, 200, 400, 1000])
def test_token_budget_is_respected_and_the_cut_is_at_a_turn(budget: int) -> None:
    history = conversation(40)
    window = select(history, ContextPolicy(max_tokens=budget))
    sent = window.of(history)
    assert sum(map(estimate_tokens, sent)) == window.tokens
    assert sent[0].role is U  # oldest turns go whole: the window starts at a user message
    check_valid(sent)
    if window.anchor >= 0:  # the newest turn alone is over: its question on top of the budget
        assert window.tokens - estimate_tokens(sent[0]) <= budget
        assert budget < sum(map(estimate_tokens, history[window.anchor :]))
        return
    assert window.tokens <= budget
    assert sent == history[len(history) - len(sent) :]  # the newest part, contiguous
    # Oldest first: the turn before the window would not have fitted.
    previous_turn = max(i for i in range(window.start) if history[i].role is U)
    assert sum(map(estimate_tokens, history[previous_turn:])) > budget


def test_message_budget_is_respected() -> None:
    history = conversation(40)
    for limit in (1, 2, 3, 5, 8, 13):
        window = select(history, ContextPolicy(max_tokens=0, max_messages=limit))
        sent = window.of(history)
        # Within a single turn, its question may come on top of the bound.
        assert len(sent) <= limit + (1 if window.anchor >= 0 else 0)
        assert sent[0].role is U
        check_valid(sent)


def test_both_bounds_apply_together() -> None:
    history = conversation(40, tools=False)
    sent = select(history, ContextPolicy(max_tokens=10_000, max_messages=6)).of(history)
    assert len(sent) == 6
    sent = select(history, ContextPolicy(max_tokens=30, max_messages=60)).of(history)
    assert sum(map(estimate_tokens, sent)) <= 30


def test_a_tool_call_is_never_cut_from_its_result() -> None:
    # The budget would end exactly between a call and its result.
    history = [user(), answer(), user("q " * 3), call("c1"), result("c1"), answer("done")]
    tail = sum(map(estimate_tokens, history[4:]))
    sent = select(history, ContextPolicy(max_tokens=tail)).of(history)
    check_valid(sent)
    assert result("c1") not in sent or call("c1") in sent


def test_a_long_newest_turn_keeps_its_question_and_whole_tool_rounds() -> None:
    # One user input, then a long tool loop that alone is over the budget.
    history = [user("old"), answer("old"), user("the question")]
    for i in range(30):
        history += [call(f"c{i}"), result(f"c{i}")]
    budget = 60
    window = select(history, ContextPolicy(max_tokens=budget))
    sent = window.of(history)
    assert sent[0] == user("the question")  # the question is kept ahead of the window
    assert window.anchor == 2
    assert window.start > 3
    assert sent[1].role is A  # the window proper starts at a call, never at a result
    check_valid(sent)
    assert sum(map(estimate_tokens, sent)) == window.tokens <= budget + estimate_tokens(sent[0])


def test_the_newest_message_is_sent_even_alone_over_budget() -> None:
    big = "word " * 1000
    history = [user(), answer(), user(big)]
    sent = select(history, ContextPolicy(max_tokens=10)).of(history)
    assert sent == [user(big)]
    # A newest tool result over budget goes with the call it answers.
    history = [user(), call("c1"), Message(T, big, tool_call_id="c1", tool_name="clock")]
    sent = select(history, ContextPolicy(max_tokens=10)).of(history)
    assert sent == [user(), call("c1"), history[2]]
    check_valid(sent)


def test_random_histories_always_give_valid_windows() -> None:
    rng = random.Random(14)
    for _ in range(300):
        history: list[Message] = []
        for i in range(rng.randint(1, 40)):
            history.append(user("u " * rng.randint(0, 40)))
            for r in range(rng.randint(0, 3)):
                ids = [f"c{i}.{r}.{k}" for k in range(rng.randint(1, 3))]
                history.append(
                    Message(A, "", tool_calls=tuple(ToolCall(c, "clock", "{}") for c in ids))
                )
                history += [
                    Message(T, "r " * rng.randint(0, 60), tool_call_id=c, tool_name="clock")
                    for c in ids
                ]
            if rng.random() < 0.8:
                history.append(answer("a " * rng.randint(0, 40)))
        policy = ContextPolicy(max_tokens=rng.randint(1, 400), max_messages=rng.randint(0, 12))
        window = select(history, policy)
        sent = window.of(history)
        check_valid(sent)
        assert sent[-1] is history[-1]  # the newest message is always sent
        assert sum(map(estimate_tokens, sent)) == window.tokens
        if window.start == 0:
            continue
        # The window proper (without a kept question) is over a bound only when it is the
        # minimum: the newest message, with the call it answers if it is a tool result.
        proper = sent[1:] if window.anchor >= 0 else sent
        newest_unit = max(i for i, m in enumerate(history) if m.role is not T)
        over = sum(map(estimate_tokens, proper)) > policy.max_tokens or (
            policy.max_messages and len(proper) > policy.max_messages
        )
        assert not over or window.start == newest_unit
        if window.anchor < 0:
            assert sent[0].role is U or window.start == newest_unit
