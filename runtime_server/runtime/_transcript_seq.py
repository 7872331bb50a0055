"""Gap-free attach: the seq of each transcript entry and GetTranscript's resume cursor.

A console loads a worker's transcript and then subscribes to its events. Without a cursor tied to
the transcript it either misses what was committed between the two calls or shows it twice, and
the text of a message still being generated is lost (its deltas came before the load). Two facts
close that gap:

- ``TranscriptEntry.seq``: the seq of the event that committed the entry (``InputCommitted`` or
  ``MessageCommitted``). An entry object is created before its event has a seq, and the same
  object is shared by the worker's transcript window, the event payload and the store mutation;
  ``stamp`` sets the seq once, in ``EventLog.append``, while the entry is still private to that
  synchronous call chain (before the store write and before any subscriber or reader can see it).
  SQLite keeps it in the entry's row (a column of ``transcript``), so it survives a restart; an
  entry written by a version that did not record it reads back with 0.
- ``resume_after_seq`` (``resume_cursor``): when the worker has an active run, the seq of its
  newest transcript entry (the run's input or its last committed message), so a subscriber gets
  every delta of the message being generated; otherwise the newest assigned seq (everything that
  exists is already in the transcript). A page and its cursor are taken with no ``await`` between
  them, so they describe one moment. The contract: read the pages, then subscribe with
  ``after_seq = resume_after_seq`` of the last page read.
"""

from __future__ import annotations

from collections.abc import Sequence

from runtime_server.model import Event, InputCommitted, MessageCommitted

_COMMITTING = (InputCommitted, MessageCommitted)  # (a tuple: isinstance on a union is slower)


def stamp(events: Sequence[Event], newest: dict[str, int]) -> None:
    """Give each entry committed by ``events`` the seq of its committing event, and record it in
    ``newest`` (worker_id -> seq of its newest entry: the worker's window may have dropped the
    entry itself under memory pressure)."""
    for ev in events:
        payload = ev.payload
        if isinstance(payload, _COMMITTING) and payload.entry.seq == 0:
            # Frozen dataclass: the one write of a field not known when the entry was built (see
            # the module docstring for why it is safe here and nowhere else).
            object.__setattr__(payload.entry, "seq", ev.seq)
            newest[ev.worker_id] = ev.seq


def resume_cursor(newest_entry_seq: int, active: bool, last_assigned_seq: int) -> int:
    """The seq a client subscribes after, once it has read the transcript (module docstring)."""
    if active and newest_entry_seq:
        return newest_entry_seq
    return last_assigned_seq
