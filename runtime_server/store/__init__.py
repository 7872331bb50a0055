"""Persistence behind one protocol: ``MemoryStore`` (embedded default) and, for ``serve``, the
durable ``SqliteStore``. Both pass one contract test suite (tests/store).

:mod:`codec` is the stored form of every domain value (the versioned bytes both backends keep):
public, so the storage format can be checked and read without a store. :mod:`schema` is the SQLite
file's schema and the migrations between its versions (public for the same reason)."""

from __future__ import annotations

from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_schema as schema
from runtime_server.store._errors import StoreCorrupt, StoreOpenError
from runtime_server.store._memory import MemoryStore
from runtime_server.store._protocol import (
    AppendTranscript,
    CommitListener,
    DeleteConfigBundle,
    DeleteWorkerData,
    FailureListener,
    Mutation,
    PutConfigBundle,
    PutDiagnostic,
    PutMeta,
    PutRequestKey,
    PutRun,
    PutWorker,
    PutWorkerProfile,
    Store,
    StoredState,
)
from runtime_server.store._sizes import entry_bytes, run_input_bytes, text_bytes
from runtime_server.store._sqlite import SCHEMA_VERSION, Durability, SqliteStore, StoreStats

__all__ = [
    "SCHEMA_VERSION",
    "AppendTranscript",
    "CommitListener",
    "DeleteConfigBundle",
    "DeleteWorkerData",
    "Durability",
    "FailureListener",
    "MemoryStore",
    "Mutation",
    "PutConfigBundle",
    "PutDiagnostic",
    "PutMeta",
    "PutRequestKey",
    "PutRun",
    "PutWorker",
    "PutWorkerProfile",
    "SqliteStore",
    "Store",
    "StoreCorrupt",
    "StoreOpenError",
    "StoreStats",
    "StoredState",
    "entry_bytes",
    "run_input_bytes",
    "text_bytes",
    "codec",
    "schema",
]
