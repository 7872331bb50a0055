"""The turn loop: stream → commit the assistant message → run its tool calls → loop until done.

- Provider failures are retried by :func:`engine._retry.stream_with_retry` under
  ``TurnConfig.retry``; a mid-stream restart arrives as :class:`PartialDiscarded`, which is passed
  on to ``emit`` and resets the message being accumulated.
- Tool calls of one assistant message run in parallel, each bounded by ``tool_timeout_s``; output
  beyond ``tool_output_max_chars`` is cut with a marker. An unknown tool, arguments that are not a
  JSON object, a timeout or an exception become an error *result* the model sees — never a failed
  turn. Results are committed in the order the model asked for the calls.
- Tool output is cleaned of the live provider credentials (:data:`engine._redact.SECRETS`: a tool
  may read a ``.env`` file) before it is cut, emitted or sent back to the model.
- After ``max_tool_rounds`` rounds of tools, further calls are answered with an error result and
  the turn ends with :attr:`StopReason.LIMIT_REACHED`.
- With ``max_length_continuations`` > 0, a message cut by ``LENGTH`` is followed by another request
  whose history ends with that partial assistant message: Anthropic and llama.cpp treat a trailing
  assistant message as a prefill and continue it. Each part is committed as its own message.
- What the model sees beyond ``history``: ``system``, then ``examples`` (few-shot messages placed
  before the history in every request, never emitted or returned), then the history. The first
  request of the turn may also end with an assistant ``prefill`` (the opening of the answer, which
  Anthropic and llama.cpp continue) and carry ``prefill_options`` over ``options``; the prefill is
  not committed — the model's answer is (for a tool-call prefill, the parsed call renders back to
  the same text).
- History sent: ``context`` (:class:`engine._context.ContextPolicy`) picks the window of the
  history each request carries (oldest turns trimmed first, a tool call never cut from its
  result); the turn works on that window only, so its cost does not grow with the whole history.
  A provider's context-length error (before any output) makes the turn halve the window and send
  the request once more (a ``context_trimmed`` :class:`Notice` says so); a second one fails the
  turn with :class:`engine._context.ContextLengthExceededError` (``CONTEXT_LENGTH_EXCEEDED``).
- Cancellation: the HTTP stream is closed (``finally``), running tools are cancelled, every tool
  call without a result gets a synthetic error result (:data:`CANCELLED_RESULT`) so the history
  stays valid for the next turn, then the :class:`asyncio.CancelledError` propagates. A cancel
  that cuts the model's stream first reports what had arrived: the usage the provider gave so far
  (:class:`UsageReported`, when non-zero) and the partial answer (:class:`PartialMessage`, when it
  has text or reasoning; unrun tool calls are left out) — the caller decides whether to keep it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from engine import _json
from engine._accumulate import Accumulator, invalid_arguments
from engine._context import (
    ContextPolicy,
    Window,
    context_error,
    is_context_length_error,
    select,
    tighter,
)
from engine._errors import ProviderError
from engine._provider import Provider
from engine._redact import SECRETS
from engine._retry import RetryPolicy, stream_with_retry
from engine._tools import ToolRegistry
from engine._types import (
    Message,
    MessageCompleted,
    ModelRequest,
    Notice,
    PartialDiscarded,
    PartialMessage,
    ReasoningDelta,
    Role,
    StopReason,
    TextDelta,
    ToolCall,
    ToolCallFinished,
    ToolCallStarted,
    TurnEvent,
    Usage,
    UsageReported,
)
from engine._unicode import DeltaRepair, valid_text

CANCELLED_RESULT = "cancelled: the run was cancelled before this tool call finished"


@dataclass(frozen=True, slots=True)
class TurnConfig:
    model: str
    system: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    max_tool_rounds: int = 8
    tool_timeout_s: float = 30.0
    tool_output_max_chars: int = 16_000
    # How many times to ask the model to go on when it stops for length (0 = never).
    max_length_continuations: int = 0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    # How long cancelled tools get to finish unwinding before the turn stops waiting for them.
    tool_cancel_grace_s: float = 5.0
    # Few-shot messages sent before the history in every request; never committed.
    examples: tuple[Message, ...] = ()
    # Opening of the assistant's answer on the turn's first request (e.g. "<tool_call>\n" for a
    # small local model), with extra options for that request only (e.g. tool_choice).
    prefill: str = ""
    prefill_options: Mapping[str, Any] = field(default_factory=dict)
    # Which part of the history each request carries (the engine default sends it all; the
    # Runtime passes the profile's policy).
    context: ContextPolicy = field(default_factory=ContextPolicy.unbounded)


@dataclass(frozen=True, slots=True)
class TurnResult:
    messages: tuple[Message, ...]
    usage: Usage
    stop_reason: StopReason


Emit = Callable[[TurnEvent], None]


async def run_turn(
    provider: Provider,
    config: TurnConfig,
    history: Sequence[Message],
    *,
    emit: Emit,
    tools: ToolRegistry | None = None,
    windowed: bool = False,
) -> TurnResult:
    """Run one user turn on ``history`` (which ends with the user's input).

    Every delta and every completed message goes to ``emit`` as it happens (synchronously: keep it
    cheap). On cancellation, tool calls the model asked for but that have no result yet are closed
    with a synthetic error result (emitted as :class:`MessageCompleted`) so the history stays valid;
    a cancel during the model's stream emits the answer so far as :class:`PartialMessage` (and its
    usage, if the provider reported any). Then the :class:`asyncio.CancelledError` propagates.

    ``windowed``: ``history`` is already the window ``config.context`` selects (the caller keeps
    it incrementally, as the Runtime does): it is sent as given on the first request, without
    walking it again.
    """
    registry = tools if tools is not None else ToolRegistry()
    policy = config.context
    # Only the window is copied, never the whole history: a turn's cost follows what it sends.
    window = Window(0) if windowed else select(history, policy)
    messages: list[Message] = window.of(history)
    produced: list[Message] = []
    usage = Usage()
    tool_rounds = 0
    continuations = 0
    context_retried = False

    def commit(message: Message) -> None:
        messages.append(message)
        produced.append(message)
        emit(MessageCompleted(message))

    first = True
    while True:
        if policy.bounded and (produced or context_retried):
            # The turn's own messages may push older ones out of the budget.
            window = select(messages, policy)
            if window.trimmed:
                messages = window.of(messages)
        sent = (*config.examples, *messages)
        options = config.options
        if first and config.prefill:
            sent += (Message(Role.ASSISTANT, config.prefill),)
            options = {**options, **config.prefill_options}
        request = ModelRequest(
            model=config.model,
            messages=sent,
            system=config.system,
            tools=registry.specs(),
            max_tokens=config.max_tokens,
            temperature=config.temperature,
            options=options,
        )
        acc = Accumulator()
        repair = DeltaRepair()  # provider text -> valid Unicode (engine._unicode)
        stream = stream_with_retry(provider, request, config.retry)
        try:
            async for raw in stream:
                if isinstance(raw, PartialDiscarded):
                    acc = Accumulator()  # the retry streams the whole message again
                    repair = DeltaRepair()
                    emit(raw)
                    continue
                event = repair.repair(raw)
                if event is None:  # a delta's held-back half of a surrogate pair
                    continue
                acc.add(event)
                if isinstance(event, (TextDelta, ReasoningDelta)):
                    emit(event)
                elif isinstance(event, Notice):
                    emit(Notice(event.code, valid_text(event.message)))
            for owed in repair.flush():
                acc.add(owed)
                emit(owed)
        except asyncio.CancelledError:
            _report_partial(acc, emit)
            raise
        except ProviderError as exc:
            if not is_context_length_error(exc) or acc.has_content:
                raise
            sent_tokens = window.tokens or select(messages, ContextPolicy(1 << 62)).tokens
            if context_retried:
                raise context_error(config.context, sent_tokens, exc) from exc
            context_retried = True
            policy = tighter(policy, sent_tokens)
            emit(
                Notice(
                    "context_trimmed",
                    f"the provider refused ~{sent_tokens:,} estimated tokens of history as too "
                    f"long for the model; retrying once with {policy.describe()}",
                )
            )
            continue
        finally:
            await stream.aclose()
        first = False
        usage = usage + acc.usage
        emit(UsageReported(acc.usage))
        assistant = acc.message()
        for notice in invalid_arguments(assistant):
            emit(notice)
        commit(assistant)
        stop = acc.stop_reason or StopReason.UNKNOWN

        if assistant.tool_calls:
            if tool_rounds >= config.max_tool_rounds:
                for call in assistant.tool_calls:
                    _close_call(
                        call, "not run: the turn reached its tool-round limit", commit, emit
                    )
                return TurnResult(tuple(produced), usage, StopReason.LIMIT_REACHED)
            tool_rounds += 1
            await _run_tools(assistant.tool_calls, registry, config, commit, emit)
            continue
        if stop is StopReason.LENGTH and continuations < config.max_length_continuations:
            continuations += 1
            continue
        return TurnResult(tuple(produced), usage, stop)


def _report_partial(acc: Accumulator, emit: Emit) -> None:
    """The stream was cancelled midway: report the usage the provider gave so far (tokens spent
    are spent) and the partial answer, so the caller can keep what the model said."""
    if acc.usage != Usage():
        emit(UsageReported(acc.usage))
    partial = acc.message()
    if partial.text or partial.reasoning:
        # Unrun tool calls are left out, and with them any reasoning block that stood after one
        # (a block goes back where it stood, and the provider checks that).
        blocks = tuple(b for b in partial.reasoning_blocks if not b.after_calls)
        emit(
            PartialMessage(
                replace(
                    partial,
                    tool_calls=(),
                    reasoning_blocks=blocks,
                    stop_reason=StopReason.CANCELLED,
                    incomplete=True,
                )
            )
        )


def _close_call(call: ToolCall, result: str, commit: Callable[[Message], None], emit: Emit) -> None:
    _commit_result(call, result, True, commit, emit)


async def _run_tools(
    calls: Sequence[ToolCall],
    registry: ToolRegistry,
    config: TurnConfig,
    commit: Callable[[Message], None],
    emit: Emit,
) -> None:
    """Run the calls in parallel; commit results in the order the model asked for them."""
    for call in calls:
        emit(ToolCallStarted(call.call_id, call.name, call.arguments))
    tasks = [
        asyncio.create_task(_run_one(call, registry, config), name=f"tool {call.name}")
        for call in calls
    ]
    try:
        # Each task bounds itself with the tool timeout, so this wait is bounded too.
        await asyncio.wait(tasks)
    except asyncio.CancelledError:
        for task in tasks:
            task.cancel()
        # A tool that ignores cancellation must not hold the cancelled turn forever.
        await asyncio.wait(tasks, timeout=config.tool_cancel_grace_s)
        for call, task in zip(calls, tasks, strict=True):
            if task.done() and not task.cancelled() and task.exception() is None:
                text, is_error = task.result()  # finished before the cancel: keep the real result
                _commit_result(call, text, is_error, commit, emit)
            else:
                _close_call(call, CANCELLED_RESULT, commit, emit)
        raise
    for call, task in zip(calls, tasks, strict=True):
        text, is_error = task.result()
        _commit_result(call, text, is_error, commit, emit)


def _commit_result(
    call: ToolCall, text: str, is_error: bool, commit: Callable[[Message], None], emit: Emit
) -> None:
    # A tool's text can hold a lone surrogate (a file name that is not UTF-8, decoded with
    # surrogateescape; a path the model sent as a "\udcff" escape, echoed back): made valid
    # here, once, or the next request's JSON body cannot be encoded and the run fails.
    text = valid_text(text)
    emit(ToolCallFinished(call.call_id, call.name, text, is_error))
    commit(
        Message(
            role=Role.TOOL,
            text=text,
            tool_call_id=call.call_id,
            tool_name=call.name,
            is_error=is_error,
        )
    )


async def _run_one(call: ToolCall, registry: ToolRegistry, config: TurnConfig) -> tuple[str, bool]:
    tool = registry.get(call.name)
    if tool is None:
        known = ", ".join(spec.name for spec in registry.specs()) or "none"
        return f"error: unknown tool {call.name!r} (available: {known})", True
    try:
        args = _json.loads(call.arguments or "{}")
    except json.JSONDecodeError as exc:
        return f"error: arguments are not valid JSON ({exc.msg} at {exc.pos})", True
    if not isinstance(args, dict):
        return "error: arguments must be a JSON object", True
    try:
        output = await asyncio.wait_for(tool.function(args), config.tool_timeout_s)
    except TimeoutError:
        return f"error: tool timed out after {config.tool_timeout_s:g}s", True
    except Exception as exc:  # a failing tool is a result the model sees, not a crashed run
        return _cap(f"error: {type(exc).__name__}: {exc}", config.tool_output_max_chars), True
    if not isinstance(output, str):
        return f"error: tool returned {type(output).__name__}, not text", True
    return _cap(output, config.tool_output_max_chars), False


def _cap(output: str, cap: int) -> str:
    redact = SECRETS.redactor()
    if redact:  # before the cut, so that no piece of a key survives it
        output = redact.quick(output)
    if len(output) > cap:
        output = output[:cap] + f"\n[truncated: {len(output) - cap} more characters]"
    return output
