"""The stored form keeps what a provider needs back from an assistant message (issue 14): every
reasoning block with its own signature/data, the reasoning field name, a tool call's provider
extra — and histories written before these existed still decode."""

from __future__ import annotations

import json

from engine import Message, ReasoningBlock, Role, ToolCall
from runtime_server.store import codec

BLOCKS = (
    ReasoningBlock("thinking", "first", "SIG-1"),
    ReasoningBlock("redacted_thinking", data="ENC"),
    ReasoningBlock("thinking", "second", "SIG-2", after_text=4, after_calls=1),
    ReasoningBlock("reasoning_details", data='[{"type": "reasoning.text", "index": 0}]'),
)


def test_reasoning_blocks_field_and_call_extra_round_trip() -> None:
    message = Message(
        Role.ASSISTANT,
        "text",
        reasoning="firstsecond",
        tool_calls=(
            ToolCall("c1", "f", "{}", '{"google": {"thought_signature": "x"}}'),
            ToolCall("c2", "g", "{}"),
        ),
        reasoning_blocks=BLOCKS,
        reasoning_field="reasoning",
    )
    assert codec.decode_message(codec.encode_message(message)) == message


def test_a_message_stored_before_blocks_existed_still_decodes() -> None:
    old = {"role": "assistant", "text": "t", "reasoning": "r", "reasoning_signature": "sig",
           "tool_calls": [["c1", "f", "{}"]]}  # fmt: skip
    decoded = codec.decode_message(json.dumps(old).encode())
    assert decoded == Message(
        Role.ASSISTANT, "t", reasoning="r", reasoning_signature="sig",
        tool_calls=(ToolCall("c1", "f", "{}"),),
    )  # fmt: skip
