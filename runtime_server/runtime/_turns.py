"""One turn of a run, as the Runtime sees it: the engine's settings from a profile, and the
mapping of the engine's turn events onto the event log (and the transcript, the run's usage and
the diagnostics).

The mapping is on the run's hot path — every streamed delta goes through it — so it is a table of
small closures over what they touch, built once per run: one dict lookup and one log append per
delta, nothing else.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import engine
from runtime_server.model import (
    DiagnosticLevel,
    MessageCommitted,
    PartialDiscarded,
    ReasoningDelta,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptEntry,
    now,
)
from runtime_server.runtime._evolve import evolve
from runtime_server.runtime._partial import incomplete_answer
from runtime_server.runtime._profiles import Profile
from runtime_server.store import AppendTranscript, PutRun

if TYPE_CHECKING:
    from runtime_server.runtime._host import HostContext, WorkerHost


# id(profile) -> (that profile, its TurnConfig): a profile is a frozen value and a worker's is
# the same object run after run, so its engine settings are built once, not per run (~6 µs).
# The entry holds the profile itself, so its id cannot be reused while it is cached.
_TURN_CONFIGS: dict[int, tuple[Profile, engine.TurnConfig]] = {}
_TURN_CONFIGS_MAX = 256


def turn_config(profile: Profile) -> engine.TurnConfig:
    """The engine's settings for one turn of ``profile`` (built once per profile object)."""
    hit = _TURN_CONFIGS.get(id(profile))
    if hit is not None and hit[0] is profile:
        return hit[1]
    config = _build_turn_config(profile)
    if len(_TURN_CONFIGS) >= _TURN_CONFIGS_MAX:
        _TURN_CONFIGS.clear()
    _TURN_CONFIGS[id(profile)] = (profile, config)
    return config


def _build_turn_config(profile: Profile) -> engine.TurnConfig:
    return engine.TurnConfig(
        model=profile.model,
        system=profile.system_prompt,
        max_tokens=profile.max_tokens,
        temperature=profile.temperature,
        options={k: v for k, v in profile.options.items() if k != "delay_ms"},
        max_tool_rounds=profile.max_tool_rounds,
        tool_timeout_s=profile.tool_timeout_s,
        max_length_continuations=profile.max_length_continuations,
        retry=engine.RetryPolicy(max_attempts=max(1, profile.provider.max_retries + 1)),
        examples=profile.examples,
        prefill=profile.prefill,
        prefill_options=profile.prefill_options,
        context=profile.context,
    )


def event_mapper(
    host: WorkerHost, ctx: HostContext, run_id: str, tools: engine.ToolRegistry | None = None
) -> engine.Emit:
    """The ``emit`` callback of one run's turn: engine events -> events, transcript entries,
    the run's usage so far, and diagnostics."""
    log_ = ctx.require_log()
    append_one = log_.append_one
    diagnose = ctx.diagnose
    worker_id = host.worker.worker_id

    # TextDelta and UsageReported payloads are the engine's own classes (runtime_server.model):
    # the engine's frozen event is the payload as it is, not copied.
    def on_text(ev: Any) -> None:
        append_one(worker_id, run_id, ev)

    def on_reasoning(ev: Any) -> None:
        append_one(worker_id, run_id, ReasoningDelta(ev.text))

    def on_tool_start(ev: Any) -> None:
        append_one(worker_id, run_id, ToolCallStarted(ev.call_id, ev.name, ev.arguments))
        if tools is not None and tools.get(ev.name) is None:
            # the engine answers it with an error result; the operator learns of it here
            diagnose(
                DiagnosticLevel.WARNING,
                "TOOL_NOT_ALLOWED",
                f"the model asked for tool {ev.name[:64]!r}, which is not among this "
                f"worker's tools ({', '.join(host.worker.tools or ()) or 'none'})",
                worker_id,
                run_id,
            )

    def on_tool_end(ev: Any) -> None:
        append_one(worker_id, run_id, ToolCallFinished(ev.call_id, ev.name, ev.result, ev.is_error))

    def on_message(ev: Any) -> None:
        entry = TranscriptEntry(
            worker_id=worker_id, index=len(host.transcript), run_id=run_id, created_at=now(),
            message=ev.message,
        )  # fmt: skip
        host.transcript.append(entry)
        log_.append(worker_id, run_id, [MessageCommitted(entry)], [AppendTranscript(entry)])

    def on_usage(ev: Any) -> None:
        # Once per model request: keep the run record current (GetRun shows usage so far) and
        # durable, so tokens spent before a crash are not lost (recovery adds them to the worker).
        host.run_usage = host.run_usage + ev.usage
        active = host.active
        if active is None or active.run_id != run_id:
            append_one(worker_id, run_id, ev)
            return
        active = host.active = evolve(active, usage=host.run_usage)
        ctx.runs.runs[run_id] = active
        log_.append(worker_id, run_id, [ev], [PutRun(active)])

    def on_partial(ev: Any) -> None:
        # a cancel cut the stream: keep what the model said (see _partial)
        on_message(engine.MessageCompleted(incomplete_answer(ev.message, host.cancel_state)))

    def on_discard(ev: Any) -> None:
        append_one(worker_id, run_id, PartialDiscarded(ev.reason))

    def on_notice(ev: Any) -> None:
        diagnose(DiagnosticLevel.WARNING, ev.code, ev.message, worker_id, run_id)

    handlers: dict[type, Callable[[Any], None]] = {
        engine.TextDelta: on_text,
        engine.ReasoningDelta: on_reasoning,
        engine.ToolCallStarted: on_tool_start,
        engine.ToolCallFinished: on_tool_end,
        engine.MessageCompleted: on_message,
        engine.UsageReported: on_usage,
        engine.PartialDiscarded: on_discard,
        engine.PartialMessage: on_partial,
        engine.Notice: on_notice,
    }

    def emit(event: engine.TurnEvent) -> None:
        handlers[type(event)](event)

    return emit
