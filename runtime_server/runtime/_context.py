"""The Runtime's side of the context policy: the history a run sends, at a cost that follows the
window, not the worker's whole transcript.

The engine chooses the window (:func:`engine.select`: oldest turns first, a tool call never cut
from its result, the question of an over-long turn kept); this module gets that window to it
cheaply, from what the Runtime keeps of the transcript (:mod:`._transcripts`):

- **Incremental.** Each worker's :class:`TranscriptWindow` carries a :class:`Fit`: the oldest
  message (absolute index) of the longest suffix that fits the budget, and that suffix's
  estimated tokens. A run only adds the messages appended since the last one and drops the
  oldest ones until the budget holds again, so selecting is O(new messages), not O(window); the
  window is then copied once for the engine (``run_turn(..., windowed=True)`` trusts it).
- **Only the window is read.** When the part needed is no longer in memory (after a restart, or
  emptied under memory pressure), older entries are read from the store backwards, in growing
  chunks, only until the budget is filled, and are put back into the in-memory window — never
  the whole transcript. A worker with an unbounded policy keeps the old behaviour (the whole
  history, :meth:`Transcripts.history`).

The transcript itself is never cut: the store keeps every entry, and ``GetTranscript`` pages
through all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import engine
from runtime_server.model import TranscriptEntry
from runtime_server.runtime._transcripts import Transcripts, TranscriptWindow, WaitCommitted
from runtime_server.store import entry_bytes

# First store read when the window must reach back past what is in memory; doubled each time.
_FIRST_CHUNK = 256


@dataclass(slots=True)
class Fit:
    """``messages[first:upto]`` (absolute indexes) is the longest suffix of the first ``upto``
    messages within ``policy``; ``tokens`` and ``count`` are its size."""

    policy: engine.ContextPolicy
    first: int
    upto: int
    tokens: int
    count: int


async def run_history(
    transcripts: Transcripts,
    window: TranscriptWindow,
    policy: engine.ContextPolicy,
    wait_committed: WaitCommitted,
) -> list[engine.Message]:
    """The messages a run of this worker sends: the whole history when ``policy`` is unbounded,
    else the policy's window (see the module docstring)."""
    if not policy.bounded:
        return await transcripts.history(window, wait_committed)
    fit = _advance(window, policy)
    messages: Sequence[engine.Message]
    if fit is not None:
        messages, base = window.live_messages(), window.base
    else:
        fit, messages, base = await _fit_from_store(transcripts, window, policy, wait_committed)
    return engine.settle(messages, policy, fit.first - base, fit.tokens).of(messages)


def _advance(window: TranscriptWindow, policy: engine.ContextPolicy) -> Fit | None:
    """The window's :class:`Fit` brought up to date with the messages appended since, or
    ``None`` when it must be computed afresh (no fit yet, another policy, or its oldest message
    has left memory)."""
    fit = window.context
    if not isinstance(fit, Fit) or fit.policy != policy or fit.first < window.base:
        return None
    origin, messages = window.origin, window.messages  # messages[i - origin]: absolute i
    max_tokens = policy.max_tokens or 1 << 62
    max_messages = policy.max_messages or 1 << 62
    estimate = engine.estimate_tokens
    for index in range(fit.upto, window.length):
        fit.tokens += estimate(messages[index - origin])
        fit.count += 1
    fit.upto = window.length
    # The newest message always counts, even alone over the budget (the engine sends it).
    while fit.count > 1 and (fit.tokens > max_tokens or fit.count > max_messages):
        fit.tokens -= estimate(messages[fit.first - origin])
        fit.first += 1
        fit.count -= 1
    return fit


async def _fit_from_store(
    transcripts: Transcripts,
    window: TranscriptWindow,
    policy: engine.ContextPolicy,
    wait_committed: WaitCommitted,
) -> tuple[Fit, list[engine.Message], int]:
    """Walk back from the newest message, reading older entries from the store in growing
    chunks until the budget is filled (or the transcript's start is reached). Returns the fit,
    the messages it indexes and the absolute index of their first; the entries read are put
    back in front of the in-memory window when it did not change meanwhile."""
    held, held_base, dead = window.messages, window.base, window.dead
    messages, base, length = held[dead:] if dead else held, held_base, window.length
    read: list[TranscriptEntry] = []
    chunk = _FIRST_CHUNK
    while True:
        first, tokens = engine.fit_suffix(messages, policy)
        if first > 0 or base == 0:
            break
        start = max(0, base - chunk)
        chunk *= 2
        older = await transcripts._read(window.worker_id, start, base - start, wait_committed)
        read = older + read
        messages = [e.message for e in older] + messages
        base = start
    fit = Fit(policy, base + first, length, tokens, len(messages) - first)
    if read and window.messages is held and window.base == held_base:
        _prepend(transcripts, window, read)
    window.context = fit
    return fit, messages, base


def _prepend(
    transcripts: Transcripts, window: TranscriptWindow, older: list[TranscriptEntry]
) -> None:
    """Put entries read from the store back in front of the window (lists are replaced, never
    changed in place: a reader may hold the old ones). If that makes the window too big, its
    usual trimming drops the oldest again and the next run reads them once more."""
    sizes = [entry_bytes(e) for e in older]
    loaded = sum(sizes)
    dead = window.dead
    window.replace(
        older + window.entries[dead:],
        [e.message for e in older] + window.messages[dead:],
        sizes + window.sizes[dead:],
        window.base - len(older),
    )
    window.bytes += loaded
    transcripts._grew(window, loaded)
