"""Persistence behind one protocol: ``MemoryStore`` (embedded default) and, for ``serve``, a
durable SQLite store. Both pass one contract test suite."""

from __future__ import annotations

from runtime_server.store._memory import MemoryStore
from runtime_server.store._protocol import (
    AppendTranscript,
    CommitListener,
    DeleteWorkerData,
    Mutation,
    PutRequestKey,
    PutRun,
    PutWorker,
    Store,
    StoredState,
)

__all__ = [
    "AppendTranscript",
    "CommitListener",
    "DeleteWorkerData",
    "MemoryStore",
    "Mutation",
    "PutRequestKey",
    "PutRun",
    "PutWorker",
    "Store",
    "StoredState",
]
