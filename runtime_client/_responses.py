"""The client's response envelopes: pages and the acknowledgements of ``send_input`` and
``create_worker``. Part of the public vocabulary (re-exported by ``runtime_client`` and
``_models``)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Generic, TypeVar

if TYPE_CHECKING:
    # TranscriptEntry: named in a base class as a string, which ruff does not count as a use
    from runtime_client._models import Event, Run, TranscriptEntry, Worker  # noqa: F401

__all__ = [
    "Page",
    "TranscriptPage",
    "EventsPage",
    "Accepted",
    "Created",
]


T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a listing; pass ``next_page_token`` back for the next ("" = last page)."""

    items: tuple[T, ...]
    next_page_token: str = ""
    total_size: int = 0

    def __iter__(self) -> Iterator[T]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)


@dataclass(frozen=True, slots=True)
class TranscriptPage(Page["TranscriptEntry"]):
    """``get_transcript``: a page plus the cursor to subscribe after. Read the pages, then
    subscribe with ``after_seq = resume_after_seq`` of the last page read: nothing the transcript
    holds comes again and nothing is missed, including the deltas of a message still being
    generated (the cursor is then the seq of the active run's newest entry)."""

    resume_after_seq: int = 0


@dataclass(frozen=True, slots=True)
class EventsPage:
    """``list_events``: a batch plus the log's bounds when it was read and the next cursor."""

    events: tuple[Event, ...]
    last_seq: int = 0
    oldest_seq: int = 0
    next_after_seq: int = 0


@dataclass(frozen=True, slots=True)
class Accepted:
    """``send_input``: the run and the seq of its RunQueued event (subscribe after it to see
    everything the run does)."""

    run: Run
    seq: int


@dataclass(frozen=True, slots=True)
class Created:
    """``create_worker``: the worker, the seq of its WorkerCreated event, and the run started by
    ``initial_input`` if one was given."""

    worker: Worker
    seq: int
    initial_run: Run | None = None
