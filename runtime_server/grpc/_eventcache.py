"""Encode each event once, and reuse it for every subscriber and ListEvents.

Converting a domain ``Event`` to ``pb.Event`` was ~2/3 of the subscription stream's own CPU, and
it was done once per subscriber (and again by every ListEvents that returned the event). The
event is immutable and its seq is unique among *published* events, so its message is a function
of the event: the first stream (or page) that needs it converts it, the others take the same
message object.

Sharing one message object is safe because nothing mutates it after it is built: gRPC serialises
the message it is handed, and ``EventBatch(events=[...])`` / ``ListEventsResponse(events=[...])``
copy their elements. The servicers never modify what they get here (a test checks the bytes of a
cached message equal a fresh conversion's).

What is kept is the event's wire bytes (:mod:`._wire`: the streams send them as they are); the
``pb.Event`` that ListEvents needs is parsed from them the first time it is asked for (0.5 µs
against 4.7 µs to build it) and kept too.

Keyed by seq, bounded (``capacity`` entries, the first inserted evicted first: seqs grow, and live
subscribers all want the newest events). A hit must be the *same* event (identity, or equality
for an event read back from the store): a seq the store discarded after a failure can be handed
out again with a different event — never published, so never converted, but the check keeps
that argument out of the cache's correctness.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from runtime_client.api import types_pb2 as pb
from runtime_server import model as m
from runtime_server.grpc._convert import wire_safe
from runtime_server.grpc._wire import event_bytes

# (a lone surrogate in text an earlier version stored: see _convert.valid_strings)
_event_bytes = wire_safe(event_bytes)

# Enough for every live subscriber's window of recent events (a replay of older events converts
# afresh; it is read from the store anyway). ~1 KB per small event message.
DEFAULT_CAPACITY = 4096


class EventCache:
    """seq -> (event, its wire bytes, its pb.Event once asked for); :meth:`encode` is
    ``_wire.event_bytes`` done once, :meth:`convert` is ``_convert.event`` done once."""

    __slots__ = ("_capacity", "_entries", "_order", "hits", "misses")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._entries: dict[int, list[Any]] = {}  # [event, bytes, pb.Event | None]
        # insertion order, for eviction: next(iter(dict)) after many deletions from the front
        # scans the deleted slots (measured 55 µs a miss instead of 10), a deque pops in O(1)
        self._order: deque[int] = deque()
        self.hits = 0
        self.misses = 0

    def _entry(self, event: m.Event) -> list[Any]:
        entry = self._entries.get(event.seq)
        if entry is not None and (entry[0] is event or entry[0] == event):
            self.hits += 1
            return entry
        self.misses += 1
        entry = [event, _event_bytes(event), None]
        entries = self._entries
        seq = event.seq
        if seq:  # (seq 0 is never a published event)
            if seq not in entries:
                self._order.append(seq)
            entries[seq] = entry
            if len(entries) > self._capacity:
                # the oldest inserted: seqs arrive mostly in increasing order, so (close to)
                # the oldest seq
                del entries[self._order.popleft()]
        return entry

    def encode(self, event: m.Event) -> bytes:
        """The event's ``pb.Event`` wire bytes."""
        encoded: bytes = self._entry(event)[1]
        return encoded

    def convert(self, event: m.Event) -> pb.Event:
        """The event's ``pb.Event`` (shared: never modify it)."""
        entry = self._entry(event)
        message = entry[2]
        if message is None:
            message = entry[2] = pb.Event.FromString(entry[1])
        return message  # type: ignore[no-any-return]

    def __len__(self) -> int:
        return len(self._entries)
