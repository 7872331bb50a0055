"""Request rendering, parsers on hand-made edge cases, the factory and the public surface."""

from __future__ import annotations

import json

import httpx
import pytest

import engine
from engine import (
    AnthropicProvider,
    ConfigurationError,
    EchoProvider,
    Message,
    ModelRequest,
    Notice,
    OpenAIChatProvider,
    ProviderStreamError,
    ReasoningBlock,
    ReasoningBlockEnd,
    ReasoningDelta,
    Role,
    SSEEvent,
    TextDelta,
    ToolCall,
    ToolCallArgsDelta,
    ToolCallStart,
    ToolSpec,
    make_provider,
)
from engine.wire import AnthropicStreamParser, OpenAIStreamParser, messages_url

CALL = ToolCall("c1", "get_weather", '{"city": "Paris"}')
HISTORY = (
    Message(Role.USER, "weather?"),
    Message(Role.ASSISTANT, "let me look", reasoning="think", reasoning_signature="sig",
            tool_calls=(CALL, ToolCall("c2", "get_time", ""))),
    Message(Role.TOOL, "sunny", tool_call_id="c1", tool_name="get_weather"),
    Message(Role.TOOL, "boom", tool_call_id="c2", tool_name="get_time", is_error=True),
    Message(Role.USER, "thanks"),
)  # fmt: skip
TOOLS = (ToolSpec("get_weather", "weather", {"type": "object"}),)
REQUEST = ModelRequest("m", HISTORY, system="be brief", tools=TOOLS, temperature=0.0)


def test_openai_body() -> None:
    provider = OpenAIChatProvider(httpx.AsyncClient(), "http://x/v1/")
    body = provider.build_body(ModelRequest("m", HISTORY, "be brief", TOOLS, 32, 0.0, {"seed": 1}))
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["max_tokens"] == 32
    assert body["seed"] == 1
    assert body["tools"][0]["function"]["name"] == "get_weather"
    messages = body["messages"]
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "tool", "tool", "user"]
    assistant = messages[2]
    assert assistant["content"] == "let me look"
    # a message stored before reasoning fields were recorded goes back as it always did...
    assert assistant["reasoning_content"] == "think"
    # ...reasoning another kind of provider produced (Anthropic blocks) is not sent...
    block = engine.ReasoningBlock("thinking", "r", "sig")
    other = (Message(Role.USER, "q"), Message(Role.ASSISTANT, "a", "r", reasoning_blocks=(block,)))
    rendered = provider.build_body(ModelRequest("m", other))["messages"][1]
    assert not {"reasoning", "reasoning_content"} & set(rendered)
    # ...and a forced field is used for every message with reasoning
    forced = OpenAIChatProvider(httpx.AsyncClient(), "http://x/v1", reasoning_field="reasoning")
    assert forced.build_body(REQUEST)["messages"][2]["reasoning"] == "think"
    assert forced.build_body(ModelRequest("m", other))["messages"][1]["reasoning"] == "r"
    assert [c["id"] for c in assistant["tool_calls"]] == ["c1", "c2"]
    assert assistant["tool_calls"][1]["function"]["arguments"] == "{}"
    assert messages[3] == {"role": "tool", "tool_call_id": "c1", "content": "sunny"}


def test_openai_refuses_n_above_one() -> None:
    provider = OpenAIChatProvider(httpx.AsyncClient(), "http://x/v1")
    with pytest.raises(ConfigurationError, match="n=3"):
        provider.build_body(ModelRequest("m", HISTORY, options={"n": 3}))


def test_anthropic_body_merges_roles_and_sends_signed_thinking_back() -> None:
    provider = AnthropicProvider(httpx.AsyncClient(), "http://x")
    body = provider.build_body(REQUEST)
    assert body["max_tokens"] == 4096  # required by the API: defaulted
    assert body["system"] == "be brief"
    assert body["tools"] == [{"name": "get_weather", "description": "weather",
                              "input_schema": {"type": "object"}}]  # fmt: skip
    turns = body["messages"]
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]
    assistant = turns[1]["content"]
    assert assistant[0] == {"type": "thinking", "thinking": "think", "signature": "sig"}
    assert assistant[1] == {"type": "text", "text": "let me look"}
    assert assistant[2]["input"] == {"city": "Paris"}
    assert assistant[3]["input"] == {}
    results = turns[2]["content"]  # both results and the next user text share one user turn
    assert [b["type"] for b in results] == ["tool_result", "tool_result", "text"]
    assert results[1]["is_error"] is True
    assert "is_error" not in results[0]


def test_anthropic_drops_unsigned_reasoning_and_trailing_prefill_space() -> None:
    history = (Message(Role.USER, "q"), Message(Role.ASSISTANT, "partial ", reasoning="r"))
    body = AnthropicProvider(httpx.AsyncClient()).build_body(
        ModelRequest("m", history, max_tokens=9)
    )
    assert body["messages"][1]["content"] == [{"type": "text", "text": "partial"}]
    assert body["max_tokens"] == 9


def test_urls() -> None:
    assert messages_url("https://api.anthropic.com") == "https://api.anthropic.com/v1/messages"
    assert messages_url("http://127.0.0.1:8080/v1/") == "http://127.0.0.1:8080/v1/messages"


def test_openai_parser_edge_cases() -> None:
    parser = OpenAIStreamParser()

    def feed(payload: object) -> list[object]:
        return list(parser.feed(SSEEvent(data=json.dumps(payload))))

    assert feed({"choices": [{"index": 0, "delta": {"role": "assistant", "content": None}}]}) == []
    # reasoning_content wins over a duplicate "reasoning"
    delta = {"reasoning_content": "a", "reasoning": "a"}
    assert feed({"choices": [{"index": 0, "delta": delta}]}) == [
        ReasoningDelta("a", "", "reasoning_content")
    ]
    assert feed({"choices": [{"index": 0, "delta": {"reasoning": "b"}}]}) == [
        ReasoningDelta("b", "", "reasoning")
    ]
    # a call without id gets one; unknown delta fields are noticed once
    call = {"index": 0, "function": {"name": "f", "arguments": "{}"}}
    events = feed({"choices": [{"index": 0, "delta": {"tool_calls": [call], "audio": {"x": 1}}}]})
    start = events[0]
    assert isinstance(start, ToolCallStart)
    assert start.call_id.startswith("call_")
    assert events[1] == ToolCallArgsDelta(0, "{}")
    assert events[2] == Notice("delta", "ignored unknown delta field 'audio'")
    assert feed({"choices": [{"index": 0, "delta": {"audio": {"x": 2}}}]}) == []
    with pytest.raises(ProviderStreamError, match="overloaded"):
        feed({"error": {"message": "overloaded", "type": "server_error"}})


def test_anthropic_parser_tolerates_unknown_things() -> None:
    parser = AnthropicStreamParser()

    def feed(payload: dict[str, object]) -> list[object]:
        return list(parser.feed(SSEEvent(event=str(payload["type"]), data=json.dumps(payload))))

    assert feed({"type": "brand_new_event"}) == [
        Notice("event", "ignored unknown stream event 'brand_new_event'")
    ]
    assert feed({"type": "brand_new_event"}) == []  # once
    block = {"type": "thinking", "thinking": "", "signature": ""}
    assert feed({"type": "content_block_start", "index": 0, "content_block": block}) == []
    delta = {"type": "signature_delta", "signature": "s1"}
    assert feed({"type": "content_block_delta", "index": 0, "delta": delta}) == []
    assert feed({"type": "content_block_stop", "index": 0}) == [
        ReasoningBlockEnd(ReasoningBlock("thinking", "", "s1"))
    ]
    # tool input given whole in the start block
    tool = {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}}
    feed({"type": "content_block_start", "index": 1, "content_block": tool})
    assert feed({"type": "content_block_stop", "index": 1})[0] == ToolCallArgsDelta(1, '{"a": 1}')
    text = {"type": "text", "text": "pre"}
    assert feed({"type": "content_block_start", "index": 2, "content_block": text}) == [
        TextDelta("pre")
    ]


def test_make_provider() -> None:
    client = httpx.AsyncClient()
    assert isinstance(make_provider("echo"), EchoProvider)
    assert isinstance(
        make_provider("openai_chat", client=client, base_url="http://x/v1"), OpenAIChatProvider
    )
    assert isinstance(make_provider("anthropic", client=client), AnthropicProvider)
    with pytest.raises(ConfigurationError, match="unknown provider kind"):
        make_provider("gemini", client=client)
    with pytest.raises(ConfigurationError, match="AsyncClient"):
        make_provider("anthropic")
    with pytest.raises(ConfigurationError, match="base_url"):
        make_provider("openai_chat", client=client)
