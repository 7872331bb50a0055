"""Conformance: the engine's providers and the official SDKs read the same recorded streams from a
real local HTTP server (odd-sized chunks) and must agree on the final message.

Compared: text, reasoning, tool names and parsed arguments, stop reason, usage — each side mapped
to the engine's normalised meaning (see engine/_usage.py). Where the engine decides differently on
purpose, the test says so:

- OpenAI refusals: the SDK keeps ``message.refusal`` apart; the engine surfaces it as text with
  stop reason REFUSAL, so the engine's text is the SDK's content + refusal.
- three_choices (n=3): the engine reads choice 0 and emits one Notice; compared with SDK choice 0.
- finish_length: the SDK stream helper raises ``LengthFinishReasonError``; the engine returns the
  partial text with stop reason LENGTH (compared with the text the SDK error carries).
- Anthropic tool input cut by max_tokens (incomplete_partial_json): the SDK partially parses the
  cut JSON; the engine keeps the raw text (which the turn loop answers with an error result), so
  only the raw prefix is compared.
- Anthropic unknown blocks (server tools, compaction, fallback): the SDK keeps them; the engine
  skips them with a Notice, so only text/tool_use blocks are compared and a Notice is required.
- Anthropic refusals: the SDK keeps ``stop_details`` apart; the engine surfaces its explanation as
  text (so the user sees why), so the engine's text is the SDK's text + the explanation.
- Anthropic thinking: every thinking / redacted_thinking block is compared with the SDK's, block
  by block (text, signature, data), since they are sent back verbatim.
"""

from __future__ import annotations

import json
from typing import Any

import anthropic
import httpx
import openai
from recorded_streams import StreamFixture

from engine import (
    Accumulator,
    AnthropicProvider,
    Message,
    ModelRequest,
    Notice,
    OpenAIChatProvider,
    Role,
    StopReason,
    Usage,
)
from engine.testing import LoopbackServer, Reply
from engine.wire import ANTHROPIC_STOP_REASONS as STOP_REASONS
from engine.wire import OPENAI_FINISH_REASONS as FINISH_REASONS
from engine.wire import render_anthropic_messages

REQUEST = ModelRequest(model="m", messages=(Message(Role.USER, "hi"),))
SIZES = (3, 1, 17, 64, 5, 250)


async def engine_message(provider_kind: str, data: bytes) -> tuple[Message, Usage, list[Notice]]:
    async with LoopbackServer([Reply(body=data, chunk_sizes=SIZES)]) as server:
        async with httpx.AsyncClient() as client:
            provider: OpenAIChatProvider | AnthropicProvider
            if provider_kind == "openai":
                provider = OpenAIChatProvider(client, server.url + "/v1")
            else:
                provider = AnthropicProvider(client, server.url)
            acc = Accumulator()
            async for event in provider.stream(REQUEST):
                acc.add(event)
        assert server.requests[0].path in ("/v1/chat/completions", "/v1/messages")
    return acc.message(), acc.usage, acc.notices


def parsed(arguments: str) -> Any:
    return json.loads(arguments) if arguments else {}


# --- OpenAI ---------------------------------------------------------------------------------------


async def sdk_openai(data: bytes) -> Any:
    async with LoopbackServer([Reply(body=data, chunk_sizes=SIZES)]) as server:
        client = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key="test", max_retries=0)
        async with client.chat.completions.stream(
            model="m", messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            async for _ in stream:
                pass
            completion = await stream.get_final_completion()
        await client.close()
    return completion


async def test_openai_stream_matches_the_sdk(openai_fixture: StreamFixture) -> None:
    message, usage, notices = await engine_message("openai", openai_fixture.data)
    try:
        completion = await sdk_openai(openai_fixture.data)
    except openai.LengthFinishReasonError as exc:
        # The SDK refuses a cut answer; the engine keeps it and says LENGTH.
        completion = exc.completion
    choice = next(c for c in completion.choices if c.index == 0)
    sdk = choice.message
    assert message.text == (sdk.content or "") + (sdk.refusal or "")
    assert message.reasoning == ((sdk.model_extra or {}).get("reasoning_content") or "")
    sdk_calls = sdk.tool_calls or []
    assert [c.name for c in message.tool_calls] == [c.function.name for c in sdk_calls]
    assert [c.call_id for c in message.tool_calls] == [c.id for c in sdk_calls]
    assert [parsed(c.arguments) for c in message.tool_calls] == [
        json.loads(c.function.arguments) for c in sdk_calls
    ]
    expected_stop = (
        StopReason.REFUSAL if sdk.refusal else FINISH_REASONS.get(choice.finish_reason or "")
    )
    assert message.stop_reason is expected_stop
    sdk_usage = completion.usage
    assert sdk_usage is not None
    details = sdk_usage.completion_tokens_details
    cached = sdk_usage.prompt_tokens_details
    assert usage == Usage(
        input_tokens=sdk_usage.prompt_tokens,
        output_tokens=sdk_usage.completion_tokens,
        cache_read_tokens=(cached.cached_tokens or 0) if cached else 0,
        reasoning_tokens=(details.reasoning_tokens or 0) if details else 0,
    )
    if len(completion.choices) > 1:
        assert [n.code for n in notices] == ["extra_choices"]
    else:
        assert notices == []


# --- Anthropic ------------------------------------------------------------------------------------

KNOWN_BLOCKS = {"text", "thinking", "redacted_thinking", "tool_use"}


async def sdk_anthropic(data: bytes) -> Any:
    async with LoopbackServer([Reply(body=data, chunk_sizes=SIZES)]) as server:
        client = anthropic.AsyncAnthropic(base_url=server.url, api_key="test", max_retries=0)
        async with client.messages.stream(
            model="m", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            message = await stream.get_final_message()
        await client.close()
    return message


def sent_back(message: Message) -> list[dict[str, Any]]:
    request = ModelRequest("m", (message, Message(Role.USER, "next")))
    first = render_anthropic_messages(request)[0]
    return list(first["content"]) if first["role"] == "assistant" else []  # empty: not sent


def known_content(blocks: list[Any]) -> list[dict[str, Any]]:
    """The SDK's content blocks of the kinds the engine sends back, adjacent texts merged."""
    out: list[dict[str, Any]] = []
    for b in blocks:
        if b.type == "text":
            if out and out[-1]["type"] == "text":
                out[-1]["text"] += b.text
            elif b.text:
                out.append({"type": "text", "text": b.text})
        elif b.type == "thinking":
            out.append({"type": "thinking", "thinking": b.thinking, "signature": b.signature})
        elif b.type == "redacted_thinking":
            out.append({"type": "redacted_thinking", "data": b.data})
        elif b.type == "tool_use":
            out.append({"type": "tool_use", "id": b.id, "name": b.name, "input": b.input})
    return out


async def test_anthropic_stream_matches_the_sdk(anthropic_fixture: StreamFixture) -> None:
    message, usage, notices = await engine_message("anthropic", anthropic_fixture.data)
    sdk = await sdk_anthropic(anthropic_fixture.data)  # accepts all of them, even out_of_order
    blocks = list(sdk.content)
    sdk_text = "".join(b.text for b in blocks if b.type == "text")
    details = getattr(sdk, "stop_details", None)
    if details is not None and details.explanation:
        assert message.text == sdk_text + f"{details.explanation} ({details.category})"
    else:
        assert message.text == sdk_text
    assert message.reasoning == "".join(b.thinking for b in blocks if b.type == "thinking")
    assert [(r.kind, r.text, r.signature, r.data) for r in message.reasoning_blocks] == [
        (b.type, b.thinking, b.signature, "") if b.type == "thinking" else (b.type, "", "", b.data)
        for b in blocks
        if b.type in ("thinking", "redacted_thinking")
    ]
    if not (details and details.explanation) and sdk.stop_reason != "max_tokens":
        # What goes back on the next request is the SDK's content, block for block.
        assert sent_back(message) == known_content(blocks)
    sdk_tools = [b for b in blocks if b.type == "tool_use"]
    assert [c.name for c in message.tool_calls] == [b.name for b in sdk_tools]
    assert [c.call_id for c in message.tool_calls] == [b.id for b in sdk_tools]
    for call, block in zip(message.tool_calls, sdk_tools, strict=True):
        if sdk.stop_reason == "max_tokens":
            # cut inside the input: the SDK partially parses it, the engine keeps the raw text
            assert call.arguments.startswith('{"filename": "taxes.txt"')
        else:
            assert parsed(call.arguments) == block.input
    expected_stop = STOP_REASONS.get(sdk.stop_reason or "", StopReason.UNKNOWN)
    assert message.stop_reason is expected_stop
    u = sdk.usage
    cache_read = u.cache_read_input_tokens or 0
    cache_write = u.cache_creation_input_tokens or 0
    assert usage == Usage(
        input_tokens=u.input_tokens + cache_read + cache_write,
        output_tokens=u.output_tokens,
        cache_read_tokens=cache_read,
        cache_write_tokens=cache_write,
    )
    unknown = {b.type for b in blocks} - KNOWN_BLOCKS
    noticed = {n.message for n in notices}
    for kind in unknown:
        assert any(repr(kind) in text for text in noticed), f"no Notice for block {kind}"
