"""The Store protocol: what the Runtime needs from persistence.

The Runtime keeps its working state (workers, runs, transcripts) in memory and hands every change
to the store as a *batch*: the events it produced plus the state mutations they record. A store
commits batches atomically and in order, then reports the highest committed seq through the
commit listener. The Runtime publishes an event (to subscribers, ListEvents, acknowledgements) only
after that report — so a seq a client has seen is never lost or reused.

A synchronous store (memory) reports inside ``write``; a durable one (SQLite) commits on a writer
thread, grouping every batch queued meanwhile into one transaction (group commit).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runtime_server.errors import StoreFailure
from runtime_server.model import ConfigBundle, Diagnostic, Event, Run, TranscriptEntry, Worker


@dataclass(frozen=True, slots=True)
class PutWorker:
    worker: Worker


@dataclass(frozen=True, slots=True)
class PutRun:
    run: Run


@dataclass(frozen=True, slots=True)
class AppendTranscript:
    entry: TranscriptEntry


@dataclass(frozen=True, slots=True)
class DeleteWorkerData:
    """Remove the worker, its runs, transcript and idempotency keys (its events age out)."""

    worker_id: str


@dataclass(frozen=True, slots=True)
class PutRequestKey:
    """An idempotency key: ``scope`` is ``"create"`` or a worker id; ``result`` the id it produced
    (worker id or run id), ``seq`` the seq that acknowledged it."""

    scope: str
    request_id: str
    fingerprint: str
    result: str
    seq: int


@dataclass(frozen=True, slots=True)
class PutMeta:
    """A free-form value in the store's ``meta`` table. ``key`` is prefixed with its topic and so
    contains a dot (``store.``: the Runtime's write probe after a store failure; ``runs.``: the
    usage of deleted workers, see ``runtime_server.runtime._lifetime``), so it never meets a
    store's own bookkeeping keys. Opening hands every such key back in :attr:`StoredState.meta`
    (as text)."""

    key: str
    value: str | int | float


@dataclass(frozen=True, slots=True)
class PutDiagnostic:
    """Diagnostic number ``number`` (increasing) joins the store's ring, which keeps the newest
    ``keep``: older ones are dropped by the same write."""

    number: int
    diagnostic: Diagnostic
    keep: int


@dataclass(frozen=True, slots=True)
class PutConfigBundle:
    """A config bundle's metadata and bytes, stored under (id, digest). Bundles are immutable:
    the Runtime writes a pair only once (a put of the same bytes again writes nothing)."""

    bundle: ConfigBundle
    content: bytes


@dataclass(frozen=True, slots=True)
class DeleteConfigBundle:
    bundle_id: str
    digest: str


@dataclass(frozen=True, slots=True)
class PutWorkerProfile:
    """The snapshot of a worker's profile resolved from a config bundle (JSON text, see
    ``runtime_server.runtime._bundles``), written with the worker's creation; removed by
    DeleteWorkerData. Like workers, a store hands these back when it opens."""

    worker_id: str
    snapshot: str


Mutation = (
    PutWorker
    | PutRun
    | AppendTranscript
    | DeleteWorkerData
    | PutRequestKey
    | PutMeta
    | PutDiagnostic
    | PutConfigBundle
    | DeleteConfigBundle
    | PutWorkerProfile
)


@dataclass(slots=True)
class StoredState:
    """Everything a store hands back when it opens.

    Transcripts are not loaded whole (they are read on demand with ``read_transcript``):
    ``transcript_lengths`` has each worker's entry count and ``transcripts`` only each one's *open
    tail* — the entries from its last non-tool message on, which is all recovery needs to close
    tool calls a crash left without a result."""

    runtime_id: str
    last_seq: int = 0
    workers: list[Worker] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)
    transcripts: dict[str, list[TranscriptEntry]] = field(default_factory=dict)
    request_keys: list[PutRequestKey] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)  # every PutMeta key, with its last value
    transcript_lengths: dict[str, int] = field(default_factory=dict)
    # Config bundles (metadata only: bytes are read with read_config_bundle), and the profile
    # snapshots of workers created from them (PutWorkerProfile), by worker id.
    config_bundles: list[ConfigBundle] = field(default_factory=list)
    worker_profiles: dict[str, str] = field(default_factory=dict)


CommitListener = Callable[[int], None]
FailureListener = Callable[[StoreFailure], None]


class Store(Protocol):
    @property
    def kind(self) -> str: ...

    async def open(self, new_runtime_id: str) -> StoredState:
        """Open (or create) the store; ``new_runtime_id`` is used only for a new store."""
        ...

    def set_commit_listener(self, listener: CommitListener) -> None:
        """``listener(seq)`` is called on the event loop once every event with a seq up to ``seq``
        (and every mutation written with them) is committed."""
        ...

    def set_failure_listener(self, listener: FailureListener) -> None:
        """``listener(error)`` is called on the event loop when writes failed: every batch not yet
        reported was discarded (nothing of it is committed); ``write``/``flush`` raise ``error``
        until ``resume()``."""
        ...

    def resume(self) -> None:
        """Accept writes again after a failure (the next seq follows the last reported one);
        raises StoreFailure if the store cannot resume (a damaged file)."""
        ...

    async def reload(self) -> StoredState:
        """The committed state, read afresh (what memory goes back to after a failure)."""
        ...

    def write(self, events: Sequence[Event], mutations: Sequence[Mutation] = ()) -> None:
        """Queue one batch (events in seq order). Never blocks; commits in order, atomically."""
        ...

    async def flush(self) -> None:
        """Return once everything written so far is committed."""
        ...

    async def read_events(self, after_seq: int, limit: int, worker_id: str = "") -> list[Event]:
        """Committed events with seq > after_seq, oldest first, at most ``limit``."""
        ...

    def oldest_seq(self) -> int:
        """The oldest retained seq (0 when the log is empty)."""
        ...

    async def read_diagnostics(self) -> list[tuple[int, Diagnostic]]:
        """The diagnostics ring (:class:`PutDiagnostic`): committed ``(number, diagnostic)``
        pairs, oldest first."""

    async def read_transcript(
        self, worker_id: str, start: int, limit: int
    ) -> list[TranscriptEntry]:
        """Committed transcript entries of ``worker_id`` with index >= ``start``, in index order,
        at most ``limit`` (none for an unknown or deleted worker)."""
        ...

    async def read_run_input(self, run_id: str) -> str | None:
        """The input text last written for run ``run_id`` with ``PutRun`` (a later ``PutRun``
        of the run without text, as the Runtime writes once it started, keeps it); ``None`` if
        the store has no such run (never written, or its worker deleted)."""
        ...

    async def read_config_bundle(self, bundle_id: str, digest: str) -> bytes | None:
        """The bytes committed for config bundle (``bundle_id``, ``digest``) with
        ``PutConfigBundle``; ``None`` if there is none (never put, or deleted)."""
        ...

    def memory_bytes(self) -> int:
        """Estimated bytes of data this store keeps in the process's memory (see
        ``runtime_server.store._sizes``): everything, for the memory store; 0 for a store whose
        data lives on disk."""
        ...

    async def close(self) -> None: ...
