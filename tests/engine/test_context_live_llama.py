"""The context policy against the real llama.cpp server (SmolLM2-135M, ``n_ctx`` 2048; see
LOCAL_LLM.md): a history longer than the model's context is refused with llama.cpp's own
context-size error, which the engine recognises; with a budget, the same history runs, and
without one the turn trims and retries once instead of failing generically."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from engine import (
    ContextLengthExceededError,
    ContextPolicy,
    Message,
    ModelRequest,
    OpenAIChatProvider,
    ProviderHTTPError,
    RetryPolicy,
    Role,
    TurnConfig,
    TurnEvent,
    TurnResult,
    is_context_length_error,
    run_turn,
)
from engine.testing import LlamaServer

pytestmark = pytest.mark.live


def long_history() -> tuple[Message, ...]:
    """~60 turns of ~45 words: well over 2,048 tokens."""
    out: list[Message] = []
    for i in range(60):
        out.append(Message(Role.USER, f"Tell me fact {i} about the sea. " + "Waves roll in. " * 8))
        out.append(Message(Role.ASSISTANT, f"Fact {i}: the sea is " + "very deep indeed. " * 6))
    out.append(Message(Role.USER, "Say hello."))
    return tuple(out)


LONG = long_history()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=120) as c:
        yield c


async def test_llama_cpp_context_error_is_recognised(
    llama: LlamaServer, client: httpx.AsyncClient
) -> None:
    provider = OpenAIChatProvider(client, llama.openai_base_url)
    request = ModelRequest(model="smollm2", messages=LONG, max_tokens=8)
    with pytest.raises(ProviderHTTPError) as caught:
        async for _ in provider.stream(request):
            pass
    assert is_context_length_error(caught.value), caught.value.message


async def test_a_budget_lets_the_long_history_run(
    llama: LlamaServer, client: httpx.AsyncClient
) -> None:
    events: list[TurnEvent] = []
    config = TurnConfig(
        model="smollm2",
        max_tokens=8,
        temperature=0,
        retry=RetryPolicy.none(),
        context=ContextPolicy(max_tokens=1_000),
    )
    provider = OpenAIChatProvider(client, llama.openai_base_url)
    result = await run_turn(provider, config, LONG, emit=events.append)
    assert result.messages[-1].role is Role.ASSISTANT
    assert result.usage.input_tokens < 2_048


async def test_without_a_budget_the_turn_trims_and_retries_instead_of_failing_generically(
    llama: LlamaServer, client: httpx.AsyncClient
) -> None:
    events: list[TurnEvent] = []
    config = TurnConfig(model="smollm2", max_tokens=8, temperature=0, retry=RetryPolicy.none())
    provider = OpenAIChatProvider(client, llama.openai_base_url)
    outcome: TurnResult | ContextLengthExceededError
    try:
        outcome = await run_turn(provider, config, LONG, emit=events.append)
    except ContextLengthExceededError as exc:  # half was still too much for 2,048: typed
        outcome = exc
    if isinstance(outcome, ContextLengthExceededError):
        assert "no budget" in outcome.message
    else:
        assert outcome.messages[-1].role is Role.ASSISTANT
    assert any(getattr(e, "code", "") == "context_trimmed" for e in events)
