"""What the garbage collector walks of the memory store's retained events.

- The store's bookkeeping adds one item per retained event for a full collection to walk (its
  slot in the event list): the seq and size columns are arrays, which the collector never walks
  (as lists they were two more items per event; at 500,000 retained events a full collection of
  a store of echo runs took ~25 % less CPU without them).
- An event trimmed by retention is let go at once (its slot emptied), not when the list's dead
  head is next compacted (which could hold up to the retained count again).
"""

from __future__ import annotations

import gc
import weakref

from store_samples import all_payloads, event, seqs

from runtime_server.model import InputCommitted, TextDelta
from runtime_server.store import MemoryStore


def _walked() -> int:
    """Every reference a full collection follows (``tp_traverse`` of every tracked object)."""
    gc.collect()
    return sum(len(gc.get_referents(o)) for o in gc.get_objects())


async def test_retained_events_add_one_walked_reference_each() -> None:
    store = MemoryStore()
    await store.open("rt")
    n = 5_000
    events = [event(s, payload=TextDelta(f"t{s}")) for s in range(1, n + 1)]
    before = _walked()  # the events themselves, and this list's n references to them
    store.write(events)
    del events
    after = _walked()  # the events, and the store's references to them
    assert abs(after - before) < n // 10, (before, after)
    assert seqs(await store.read_events(0, n)) == list(range(1, n + 1))


async def test_a_trimmed_event_is_let_go_at_once() -> None:
    store = MemoryStore(retention_events=10)
    await store.open("rt")
    for s in range(1, 41):
        store.write([event(s)])
    kept = event(41, payload=all_payloads()[4])  # InputCommitted: its message takes a weakref
    assert isinstance(kept.payload, InputCommitted)
    ref = weakref.ref(kept.payload.entry.message)
    store.write([kept])
    del kept
    for s in range(42, 60):
        store.write([event(s)])
    assert seqs(await store.read_events(0, 100)) == list(range(50, 60))
    gc.collect()
    assert ref() is None
