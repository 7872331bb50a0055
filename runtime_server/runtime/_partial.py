"""What a cancelled or interrupted run keeps of the answer it was streaming.

Decisions:

- When a cancel cuts the model's stream, the engine reports the answer so far
  (:class:`engine.PartialMessage`) and the usage the provider reported so far. The Runtime commits
  the answer to the transcript like any other message (a ``MessageCommitted`` event, before the
  run's ``RunFinished``), marked ``incomplete``, with stop reason ``cancelled`` (CancelRun,
  StopWorker, busy policy INTERRUPT) or ``interrupted`` (shutdown, or a cancel the Runtime did not
  cause). The usage counts toward the run, the worker and the runtime; a provider that had
  reported nothing yet (OpenAI sends usage only at the end) leaves it at 0.
- Later requests send it back as an ordinary assistant message, so the model sees what it said:
  OpenAI Chat gets ``{"role": "assistant", "content": <partial text>}``; Anthropic gets a text
  block in an assistant turn (unsigned partial reasoning is not sent back, as for any message).
- An empty partial (the cancel came before any text or reasoning) commits nothing: Anthropic
  rejects an assistant message with empty content, and there is nothing to remember. The
  transcript then holds two user messages in a row, which OpenAI accepts and the Anthropic
  renderer merges into one user turn (the API requires alternating roles).
- Tool calls whose stream was cut are left out (never run; their arguments may be cut mid-JSON).
  Tool calls that were running when the cancel came keep their synthetic result, as before.
- After a crash (``kill -9``) the partial answer was never committed and is not known: recovery
  marks the run INTERRUPTED and closes dangling tool calls, nothing more.
"""

from __future__ import annotations

from dataclasses import replace

import engine
from runtime_server.model import RunState


def incomplete_answer(partial: engine.Message, cancel_state: RunState | None) -> engine.Message:
    """The message to commit for a run cut short: ``partial`` marked incomplete, its stop reason
    ``cancelled`` if the run is being cancelled, else ``interrupted`` (the runtime is stopping, or
    the task was cancelled from outside: ``cancel_state`` is None)."""
    reason = (
        engine.StopReason.CANCELLED
        if cancel_state is RunState.CANCELLED
        else engine.StopReason.INTERRUPTED
    )
    return replace(partial, stop_reason=reason, incomplete=True)
