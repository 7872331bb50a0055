"""Real turns against llama.cpp + SmolLM2-135M (see LOCAL_LLM.md), through both wire formats.

Assertions are on structure (stop reasons, roles, tool names, parsed arguments, usage present),
not on prose. Temperature 0 and the server's fixed seed make the answers repeatable; requests stay
at ≤ 64 tokens. The ``llama`` fixture skips locally without the model and fails when CI is set.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import anthropic
import httpx
import openai
import pytest

from engine import (
    AnthropicProvider,
    Message,
    MessageCompleted,
    ModelRequest,
    Provider,
    ReasoningDelta,
    RetryPolicy,
    Role,
    StopReason,
    TextDelta,
    Tool,
    ToolCall,
    ToolCallFinished,
    ToolCallStarted,
    ToolRegistry,
    TurnConfig,
    TurnEvent,
    TurnResult,
    make_provider,
    run_turn,
)
from engine.testing import LlamaServer

pytestmark = pytest.mark.live

KINDS = ["openai_chat", "anthropic"]
WEATHER_SCHEMA: dict[str, object] = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}
# One example round teaches the 135M model the call format; without it it repeats calls.
EXAMPLE_ROUND = (
    Message(Role.USER, "What is the weather in Paris?"),
    Message(Role.ASSISTANT, tool_calls=(ToolCall("call_ex1", "get_weather", '{"city": "Paris"}'),)),
    Message(Role.TOOL, "Sunny, 21 C", tool_call_id="call_ex1", tool_name="get_weather"),
    Message(Role.ASSISTANT, "It is sunny in Paris, 21 C."),
)
# The model never starts a call by itself: prefill the assistant's answer with the call tag.
TOOL_QUESTION = (
    Message(Role.USER, "What is the weather in London?"),
    Message(Role.ASSISTANT, "<tool_call>\n"),
)
# Turns with reasoning make the model open its answer with <think>. The signature is a stand-in:
# the Anthropic renderer only sends signed thinking back, and llama.cpp does not check it.
REASONING_HISTORY = (
    Message(Role.USER, "What is 2+2?"),
    Message(Role.ASSISTANT, "4", reasoning="Two plus two is four.", reasoning_signature="local"),
    Message(Role.USER, "What is 3+3?"),
    Message(Role.ASSISTANT, "6", reasoning="Three plus three is six.", reasoning_signature="local"),
    Message(Role.USER, "What is 4+4?"),
)


WEATHER_DOC = "Get the current weather for a city"


async def _rainy(args: Mapping[str, Any]) -> str:
    return f"Rainy, 12 C in {args.get('city')}"


def weather_registry(function: Any = _rainy) -> ToolRegistry:
    return ToolRegistry([Tool("get_weather", WEATHER_DOC, function, WEATHER_SCHEMA)])


def provider_for(kind: str, llama: LlamaServer, client: httpx.AsyncClient) -> Provider:
    base = llama.openai_base_url if kind == "openai_chat" else llama.base_url
    return make_provider(kind, client=client, base_url=base, idle_timeout_s=60)


async def turn(
    provider: Provider,
    history: tuple[Message, ...],
    *,
    max_tokens: int = 48,
    tools: ToolRegistry | None = None,
) -> tuple[TurnResult, list[TurnEvent]]:
    events: list[TurnEvent] = []
    config = TurnConfig(
        model="smollm2",
        max_tokens=max_tokens,
        temperature=0.0,
        max_tool_rounds=2,
        # llama.cpp may close an idle keep-alive connection just as it is reused: retry that
        retry=RetryPolicy(initial_backoff_s=0.05),
    )
    result = await run_turn(provider, config, history, emit=events.append, tools=tools)
    return result, events


@pytest.mark.parametrize("kind", KINDS)
async def test_text_turn_stops_by_itself(
    kind: str, llama: LlamaServer, client: httpx.AsyncClient
) -> None:
    history = (Message(Role.USER, "What is the capital of France? Answer in one word."),)
    result, events = await turn(provider_for(kind, llama, client), history)
    assert result.stop_reason is StopReason.END_TURN
    [message] = result.messages
    assert message.role is Role.ASSISTANT
    assert message.text.strip()
    assert message.text == "".join(e.text for e in events if isinstance(e, TextDelta))
    assert result.usage.input_tokens > 0
    assert 0 < result.usage.output_tokens <= 48


@pytest.mark.parametrize("kind", KINDS)
async def test_length_stop(kind: str, llama: LlamaServer, client: httpx.AsyncClient) -> None:
    history = (Message(Role.USER, "Write a long story about a cat."),)
    result, _ = await turn(provider_for(kind, llama, client), history, max_tokens=5)
    assert result.stop_reason is StopReason.LENGTH
    assert result.usage.output_tokens == 5
    assert result.messages[0].text


@pytest.mark.parametrize("kind", KINDS)
async def test_reasoning_is_separated_from_text(
    kind: str, llama: LlamaServer, client: httpx.AsyncClient
) -> None:
    result, events = await turn(provider_for(kind, llama, client), REASONING_HISTORY)
    [message] = result.messages
    assert message.reasoning.strip()
    assert "<think>" not in message.text
    assert message.reasoning == "".join(e.text for e in events if isinstance(e, ReasoningDelta))
    assert result.stop_reason is StopReason.END_TURN


@pytest.mark.parametrize("kind", KINDS)
async def test_full_tool_loop(kind: str, llama: LlamaServer, client: httpx.AsyncClient) -> None:
    calls: list[Mapping[str, Any]] = []

    async def get_weather(args: Mapping[str, Any]) -> str:
        calls.append(args)
        return await _rainy(args)

    registry = weather_registry(get_weather)
    provider = provider_for(kind, llama, client)
    result, events = await turn(provider, EXAMPLE_ROUND + TOOL_QUESTION, tools=registry)

    first = result.messages[0]
    assert first.role is Role.ASSISTANT
    assert first.stop_reason is StopReason.TOOL_USE
    [call] = first.tool_calls
    assert call.name == "get_weather"
    assert isinstance(json.loads(call.arguments).get("city"), str)
    assert call.call_id
    assert len(calls) == 1
    tool_result = result.messages[1]
    assert tool_result.role is Role.TOOL
    assert tool_result.tool_call_id == call.call_id
    assert not tool_result.is_error
    assert [type(e) for e in events if isinstance(e, ToolCallStarted | ToolCallFinished)] == [
        ToolCallStarted,
        ToolCallFinished,
    ]
    final = result.messages[-1]
    assert final.role is Role.ASSISTANT
    assert not final.tool_calls
    assert final.text.strip()
    assert result.stop_reason is StopReason.END_TURN
    committed = [e.message for e in events if isinstance(e, MessageCompleted)]
    assert committed == list(result.messages)


async def test_openai_sdk_agrees_on_a_live_answer(
    llama: LlamaServer, client: httpx.AsyncClient
) -> None:
    result, _ = await turn(provider_for("openai_chat", llama, client), REASONING_HISTORY)
    sdk = openai.AsyncOpenAI(base_url=llama.openai_base_url, api_key="unused", max_retries=2)
    messages: list[Any] = []
    for m in REASONING_HISTORY:
        entry: dict[str, Any] = {"role": m.role.value, "content": m.text}
        if m.reasoning:
            entry["reasoning_content"] = m.reasoning
        messages.append(entry)
    async with sdk.chat.completions.stream(
        model="smollm2",
        messages=messages,
        max_tokens=48,
        temperature=0.0,
        stream_options={"include_usage": True},
    ) as stream:
        completion = await stream.get_final_completion()
    await sdk.close()
    message = completion.choices[0].message
    assert result.messages[0].text == message.content
    assert result.messages[0].reasoning == (message.model_extra or {}).get("reasoning_content")
    assert completion.usage is not None
    assert result.usage.output_tokens == completion.usage.completion_tokens


async def test_anthropic_sdk_agrees_on_a_live_tool_call(
    llama: LlamaServer, client: httpx.AsyncClient
) -> None:
    provider = provider_for("anthropic", llama, client)
    result, _ = await turn(provider, EXAMPLE_ROUND + TOOL_QUESTION, tools=weather_registry())
    sdk = anthropic.AsyncAnthropic(base_url=llama.base_url, api_key="unused", max_retries=2)
    request = ModelRequest("smollm2", EXAMPLE_ROUND + TOOL_QUESTION, max_tokens=48)
    body = AnthropicProvider(client, llama.base_url).build_body(request)
    async with sdk.messages.stream(
        model="smollm2", max_tokens=48, messages=body["messages"],
        extra_body={"temperature": 0.0},
        tools=[{"name": "get_weather", "description": WEATHER_DOC, "input_schema": WEATHER_SCHEMA}],
    ) as stream:  # fmt: skip
        final = await stream.get_final_message()
    await sdk.close()
    [block] = [b for b in final.content if b.type == "tool_use"]
    [call] = result.messages[0].tool_calls
    assert call.name == block.name
    assert json.loads(call.arguments) == block.input
    assert final.stop_reason == "tool_use"
