"""Convert each event to protobuf once, and reuse it for every subscriber and ListEvents.

Converting a domain ``Event`` to ``pb.Event`` was ~2/3 of the subscription stream's own CPU, and
it was done once per subscriber (and again by every ListEvents that returned the event). The
event is immutable and its seq is unique among *published* events, so its message is a function
of the event: the first stream (or page) that needs it converts it, the others take the same
message object.

Sharing one message object is safe because nothing mutates it after it is built: gRPC serialises
the message it is handed, and ``EventBatch(events=[...])`` / ``ListEventsResponse(events=[...])``
copy their elements. The servicers never modify what they get here (a test checks the bytes of a
cached message equal a fresh conversion's).

Keyed by seq, bounded (``capacity`` entries, the first inserted evicted first: seqs grow, and live
subscribers all want the newest events). A hit must be the *same* event (identity, or equality
for an event read back from the store): a seq the store discarded after a failure can be handed
out again with a different event — never published, so never converted, but the check keeps
that argument out of the cache's correctness.
"""

from __future__ import annotations

from collections import deque

from runtime_client.api import types_pb2 as pb
from runtime_server import model as m
from runtime_server.grpc import _convert as cv

# Enough for every live subscriber's window of recent events (a replay of older events converts
# afresh; it is read from the store anyway). ~1 KB per small event message.
DEFAULT_CAPACITY = 4096


class EventCache:
    """seq -> (event, its pb.Event); ``convert(event)`` is ``_convert.event`` done once."""

    __slots__ = ("_capacity", "_entries", "_order", "hits", "misses")

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self._capacity = capacity
        self._entries: dict[int, tuple[m.Event, pb.Event]] = {}
        # insertion order, for eviction: next(iter(dict)) after many deletions from the front
        # scans the deleted slots (measured 55 µs a miss instead of 10), a deque pops in O(1)
        self._order: deque[int] = deque()
        self.hits = 0
        self.misses = 0

    def convert(self, event: m.Event) -> pb.Event:
        entry = self._entries.get(event.seq)
        if entry is not None and (entry[0] is event or entry[0] == event):
            self.hits += 1
            return entry[1]
        self.misses += 1
        message = cv.event(event)
        entries = self._entries
        seq = event.seq
        if seq:  # (seq 0 is never a published event)
            if seq not in entries:
                self._order.append(seq)
            entries[seq] = (event, message)
            if len(entries) > self._capacity:
                # the oldest inserted: seqs arrive mostly in increasing order, so (close to)
                # the oldest seq
                del entries[self._order.popleft()]
        return message

    def __len__(self) -> int:
        return len(self._entries)
