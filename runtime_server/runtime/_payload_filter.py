"""The payload-type filter of a subscription (``SubscribeEventsRequest.payload_types``).

A Backend that keeps a runtime-wide stream open for its worker cache wants lifecycle events
(created, state changed, run finished, ...) and not every ``TextDelta`` of every worker. The
filter names payload kinds by their ``Event.payload`` oneof field names, the same names the
client's payload classes carry as ``KIND`` — so a filter written against the client means the
same thing over gRPC and in-process.

Decisions:

- The filter is applied where the subscription takes events in (the log's fan-out and the
  replay reads), not where it hands them out: filtered-out events never occupy the subscriber's
  bounded buffer, so a filtered subscriber is not cut for lagging by traffic it did not ask for.
- Seqs keep their meaning. A filtered stream has gaps; its cursor (the last seq delivered) is
  still an exact resume point, because every event it skipped up to there was of an excluded
  kind. Heartbeats always flow (they are not events of the log).
- ``heartbeat`` is not a name the filter accepts: heartbeats are not filtered and naming one is
  a mistake, reported like any unknown name (INVALID_ARGUMENT naming ``payload_types``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType

from runtime_server import errors
from runtime_server.model import (
    Diagnostic,
    InputCommitted,
    MessageCommitted,
    PartialDiscarded,
    ReasoningDelta,
    RunFinished,
    RunQueued,
    RunStarted,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    UsageReported,
    WorkerCreated,
    WorkerDeleted,
    WorkerStateChanged,
    WorkerStopped,
)

__all__ = ["FEATURE", "PAYLOAD_TYPES", "payload_kinds"]

# Advertised in GetRuntime's capabilities.features.
FEATURE = "payload_type_filter"

# oneof field name of Event.payload -> the core's payload class (a test pins it to the proto)
PAYLOAD_TYPES: Mapping[str, type] = MappingProxyType(
    {
        "worker_created": WorkerCreated,
        "worker_state_changed": WorkerStateChanged,
        "run_queued": RunQueued,
        "run_started": RunStarted,
        "input_committed": InputCommitted,
        "text_delta": TextDelta,
        "reasoning_delta": ReasoningDelta,
        "tool_call_started": ToolCallStarted,
        "tool_call_finished": ToolCallFinished,
        "message_committed": MessageCommitted,
        "usage_reported": UsageReported,
        "partial_discarded": PartialDiscarded,
        "run_finished": RunFinished,
        "worker_stopped": WorkerStopped,
        "worker_deleted": WorkerDeleted,
        "diagnostic": Diagnostic,
    }
)

FIELD = "payload_types"


def payload_kinds(names: Sequence[str], max_chars: int = 64) -> frozenset[type] | None:
    """The payload classes a subscription keeps, or None for all (an empty filter).

    Raises InvalidArgument naming ``payload_types`` for an unknown name (the message lists the
    known ones, never echoing more than ``max_chars`` of what the caller sent)."""
    if not names:
        return None
    if isinstance(names, str):
        raise errors.InvalidArgument(FIELD, "must be a list of payload type names")
    kinds: set[type] = set()
    for name in names:
        kind = PAYLOAD_TYPES.get(name) if isinstance(name, str) else None
        if kind is None:
            shown = repr(name)[:max_chars]
            known = ", ".join(PAYLOAD_TYPES)
            raise errors.InvalidArgument(FIELD, f"unknown payload type {shown}; known: {known}")
        kinds.add(kind)
    return frozenset(kinds)
