"""TurnConfig's profile-level preamble: few-shot ``examples`` and the first request's ``prefill``.

What the model is sent is checked on the scripted provider's recorded requests; what the turn
commits must never include the examples or the prefill.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine import (
    Message,
    MessageCompleted,
    RetryPolicy,
    Role,
    ScriptedProvider,
    Tool,
    ToolCall,
    ToolRegistry,
    TurnConfig,
    TurnEvent,
    run_turn,
)
from engine.testing import text_reply, tool_reply

EXAMPLES = (
    Message(Role.USER, "What time is it?"),
    Message(Role.ASSISTANT, tool_calls=(ToolCall("ex1", "clock", "{}"),)),
    Message(Role.TOOL, "09:30", tool_call_id="ex1", tool_name="clock"),
    Message(Role.ASSISTANT, "It is 09:30."),
)


async def _clock(args: Mapping[str, Any]) -> str:
    return "10:00"


async def test_examples_precede_history_in_every_request_and_prefill_only_the_first() -> None:
    provider = ScriptedProvider([tool_reply(("c1", "clock", "{}")), text_reply("It is 10:00.")])
    config = TurnConfig(
        model="m",
        examples=EXAMPLES,
        prefill="<tool_call>\n",
        options={"seed": 7, "tool_choice": "auto"},
        prefill_options={"tool_choice": "required"},
        retry=RetryPolicy.none(),
    )
    events: list[TurnEvent] = []
    history = (Message(Role.USER, "And now?"),)
    tools = ToolRegistry([Tool("clock", "time", _clock, {"type": "object"})])
    result = await run_turn(provider, config, history, emit=events.append, tools=tools)

    first, second = provider.requests
    assert first.messages == (*EXAMPLES, *history, Message(Role.ASSISTANT, "<tool_call>\n"))
    assert first.options == {"seed": 7, "tool_choice": "required"}
    assert second.messages[: len(EXAMPLES) + 1] == (*EXAMPLES, *history)
    assert second.messages[-1].role is Role.TOOL  # no prefill after the first request
    assert second.options == {"seed": 7, "tool_choice": "auto"}
    # Only the model's own messages are produced and committed: no examples, no prefill.
    committed = [e.message for e in events if isinstance(e, MessageCompleted)]
    assert committed == list(result.messages)
    assert [m.role for m in result.messages] == [Role.ASSISTANT, Role.TOOL, Role.ASSISTANT]
    assert not any(m in EXAMPLES or m.text == "<tool_call>\n" for m in result.messages)


async def test_without_preamble_the_request_is_the_history() -> None:
    provider = ScriptedProvider([text_reply("hi")])
    history = (Message(Role.USER, "hello"),)
    config = TurnConfig(model="m", retry=RetryPolicy.none())
    await run_turn(provider, config, history, emit=lambda _e: None)
    [request] = provider.requests
    assert request.messages == history
    assert request.options == {}
