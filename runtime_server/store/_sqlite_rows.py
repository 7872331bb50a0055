"""What one writer transaction writes: the batches it commits turned into rows and statements.

The writer's Python work is most of a SQLite run's extra CPU (profiled: ~40% of the writer's
samples encoded bodies, and every statement is a round of binding, stepping and GIL hand-offs),
so a transaction writes each fact once:

* **Encoded once.** A run's record is in its event (``RunStarted``, ``RunFinished``) and in the
  ``PutRun`` written with it — the same object: its JSON is built once per transaction
  (``Memo``), and the runs table's form (without the input text) needs no copy of the run.
* **Few statements.** Events are inserted many rows to a statement (:func:`insert_events`).
* **Superseded puts skipped.** ``PutRun``/``PutWorker`` replace a whole row, so within one
  transaction only the last put of a run or worker is written (a run is put when queued and again
  when started, in the same batch; its usage and its end usually commit together): the rows read
  back after the commit are exactly those of writing every put in order. A ``PutRun``'s input
  text has its own row (``run_inputs``), written for every put that carries one. Transactions
  that delete a worker's data keep every put (rare, and order matters there).

Atomicity is the transaction's: nothing here changes what a committed transaction contains.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence
from typing import Any

from runtime_server.model import (
    Event,
    Payload,
    ReasoningDelta,
    Run,
    RunFinished,
    RunQueued,
    RunStarted,
    TextDelta,
    Worker,
    WorkerState,
    WorkerStateChanged,
)
from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_bundles as bundle_rows
from runtime_server.store import _sqlite_reads as reads
from runtime_server.store import _transcript_seqs as transcript_seqs
from runtime_server.store._protocol import (
    AppendTranscript,
    DeleteWorkerData,
    Mutation,
    PutDiagnostic,
    PutMeta,
    PutRequestKey,
    PutRun,
    PutWorker,
)

EventRow = tuple[int, float, str, str, str, bytes]

Memo = dict[int, str]
"""Run bodies already encoded in this transaction, by ``id()`` of the run: valid only while every
run it saw is alive (the batches being committed hold them)."""

_STATE_CHANGES: dict[tuple[WorkerState, WorkerState], bytes] = {
    (a, b): codec.encode_payload(WorkerStateChanged(a, b))[1]
    for a in WorkerState
    for b in WorkerState
}
_RUN_KINDS: dict[type[Any], str] = {
    RunQueued: "run_queued",
    RunStarted: "run_started",
    RunFinished: "run_finished",
}


def encode_payload(payload: Payload, memo: Memo) -> tuple[str, bytes]:
    """``codec.encode_payload``, with shortcuts for the common kinds that write the very bytes it
    writes (tests pin that): text deltas and worker state changes without building a dict, and a
    run's JSON once per transaction."""
    cls = payload.__class__
    if cls is TextDelta:
        return "text_delta", _text_body(payload.text)  # type: ignore[union-attr]
    if cls is ReasoningDelta:
        return "reasoning_delta", _text_body(payload.text)  # type: ignore[union-attr]
    if cls is WorkerStateChanged:
        p: WorkerStateChanged = payload  # type: ignore[assignment]
        return "worker_state_changed", _STATE_CHANGES[p.previous, p.state]
    kind = _RUN_KINDS.get(cls)
    if kind is not None:
        run_json = _run_json(payload.run, memo, True)  # type: ignore[union-attr]
        return kind, ('{"run":' + run_json + "}").encode("utf-8", "surrogatepass")
    return codec.encode_payload(payload)


def encode_run(run: Run, memo: Memo | None, *, with_input: bool = True) -> bytes:
    """``codec.encode_run``, once per ``memo``."""
    if memo is None:
        return codec.encode_run(run, with_input=with_input)
    return _run_json(run, memo, with_input).encode("utf-8", "surrogatepass")


def _text_body(text: str) -> bytes:
    return ('{"text":' + codec._encode_str(text) + "}").encode("utf-8", "surrogatepass")


def _run_json(run: Run, memo: Memo, with_input: bool) -> str:
    # the form without the input is a different text only when the run has one
    key = id(run) * 2 + (not with_input and bool(run.input_text))
    text = memo.get(key)
    if text is None:
        text = memo[key] = codec._dumps_text(codec.run_to_obj(run, with_input=with_input))
    return text


def event_rows(events: Iterable[Event], memo: Memo) -> list[EventRow]:
    rows: list[EventRow] = []
    for e in events:
        kind, body = encode_payload(e.payload, memo)
        rows.append((e.seq, e.time, e.worker_id, e.run_id, kind, body))
    return rows


# Events go in with multi-row INSERTs of 2**k rows (k <= _MAX_ROWS_LOG2): one statement step per
# group instead of one per row (each step releases and retakes the GIL, which the busy event loop
# holds), and only a few distinct statements for the connection's statement cache.
_MAX_ROWS_LOG2 = 6
_INSERT_EVENTS = [
    "INSERT INTO events VALUES " + ",".join(["(?, ?, ?, ?, ?, ?)"] * (1 << k))
    for k in range(_MAX_ROWS_LOG2 + 1)
]


def insert_events(conn: sqlite3.Connection, rows: Sequence[EventRow]) -> None:
    """``rows`` in seq order, in as few statements as the power-of-two groups allow."""
    i, n = 0, len(rows)
    while i < n:
        k = min(_MAX_ROWS_LOG2, (n - i).bit_length() - 1)
        size = 1 << k
        params = [value for row in rows[i : i + size] for value in row]
        conn.execute(_INSERT_EVENTS[k], params)
        i += size


def superseded(mutations: Sequence[Mutation]) -> set[int]:
    """Positions of the ``PutRun``/``PutWorker`` a later put of the same row replaces within
    ``mutations`` (one transaction's, in order); none when they delete a worker's data."""
    last: dict[tuple[bool, str], int] = {}
    skip: set[int] = set()
    for i, m in enumerate(mutations):
        cls = m.__class__
        if cls is PutRun:
            key = (True, m.run.run_id)  # type: ignore[union-attr]
        elif cls is PutWorker:
            key = (False, m.worker.worker_id)  # type: ignore[union-attr]
        elif cls is DeleteWorkerData:
            return set()
        else:
            continue
        before = last.get(key)
        if before is not None:
            skip.add(before)
        last[key] = i
    return skip


def apply_all(conn: sqlite3.Connection, mutations: Sequence[Mutation], memo: Memo) -> None:
    skip = superseded(mutations) if len(mutations) > 1 else ()
    for i, mutation in enumerate(mutations):
        if i in skip:
            if mutation.__class__ is PutRun:
                reads.put_run_input(conn, mutation.run)
            continue
        apply(conn, mutation, memo)


def apply(conn: sqlite3.Connection, mutation: Mutation, memo: Memo | None = None) -> None:
    if bundle_rows.apply(conn, mutation):  # config bundles and profile snapshots
        return
    if isinstance(mutation, PutWorker):
        w: Worker = mutation.worker
        conn.execute(
            "INSERT OR REPLACE INTO workers (worker_id, body) VALUES (?, ?)",
            (w.worker_id, codec.encode_worker(w)),
        )
    elif isinstance(mutation, PutRun):
        r: Run = mutation.run
        reads.put_run_input(conn, r)  # its own row: kept when the record is rewritten
        conn.execute(
            "INSERT OR REPLACE INTO runs (run_id, worker_id, body) VALUES (?, ?, ?)",
            (r.run_id, r.worker_id, encode_run(r, memo, with_input=False)),
        )
    elif isinstance(mutation, AppendTranscript):
        e = mutation.entry
        # REPLACE, not INSERT: writing the entry at an index again states the same fact.
        conn.execute(
            "INSERT OR REPLACE INTO transcript (worker_id, idx, run_id, created_at, body)"
            " VALUES (?, ?, ?, ?, ?)",
            (e.worker_id, e.index, e.run_id, e.created_at, codec.encode_message(e.message)),
        )
        transcript_seqs.put(conn, e)
    elif isinstance(mutation, DeleteWorkerData):
        wid = mutation.worker_id
        conn.execute("DELETE FROM workers WHERE worker_id = ?", (wid,))
        conn.execute("DELETE FROM runs WHERE worker_id = ?", (wid,))
        conn.execute("DELETE FROM transcript WHERE worker_id = ?", (wid,))
        transcript_seqs.delete(conn, wid)
        reads.delete_run_inputs(conn, wid)
        # Only the worker's own keys: "create" keys stay, as they do in the Runtime's memory.
        conn.execute("DELETE FROM request_keys WHERE scope = ?", (wid,))
    elif isinstance(mutation, PutRequestKey):
        k = mutation
        conn.execute(
            "INSERT OR REPLACE INTO request_keys (scope, request_id, fingerprint, result, seq)"
            " VALUES (?, ?, ?, ?, ?)",
            (k.scope, k.request_id, k.fingerprint, k.result, k.seq),
        )
    elif isinstance(mutation, PutMeta):
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (mutation.key, mutation.value)
        )
    elif isinstance(mutation, PutDiagnostic):
        _, body = codec.encode_payload(mutation.diagnostic)
        conn.execute(
            "INSERT OR REPLACE INTO diagnostics (number, body) VALUES (?, ?)",
            (mutation.number, body),
        )
        conn.execute(
            "DELETE FROM diagnostics WHERE number <= ?",
            (mutation.number - max(1, mutation.keep),),
        )
    else:  # pragma: no cover - the Mutation union is closed
        raise TypeError(f"unknown mutation {mutation!r}")
