"""What one writer transaction writes: the batches it commits turned into rows and statements.

The writer's Python work is most of a SQLite run's extra CPU (profiled: ~40% of the writer's
samples encoded bodies, and every statement is a round of binding, stepping and GIL hand-offs),
so a transaction writes each fact once:

* **Encoded once.** A run's record is in its event (``RunStarted``, ``RunFinished``) and in the
  ``PutRun`` written with it — the same object: its JSON is built once per transaction
  (``Memo``), and the runs table's form (without the input text) needs no copy of the run.
* **Events as chunks.** A transaction's events become one row per worker (:func:`chunk_rows`,
  the format in ``_sqlite_chunks``), each body built as one text and encoded once, inserted in
  one statement (:func:`chunk_statements`); the puts of many rows of one table go in one
  ``executemany`` (:class:`Statements`).
* **Encoded before the transaction.** :func:`plan` encodes every value first, so the writer's
  Python work is one stretch under the GIL rather than a slice between every two statements
  (each statement's step releases the GIL, and retaking it can wait for the busy loop).
* **Rows rewritten in place.** A run's second put updates its body only (``ON CONFLICT DO
  UPDATE``): its ``runs_by_worker`` entry is not deleted and reinserted.
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
from collections.abc import Sequence
from typing import Any

from engine import Message
from runtime_server.model import (
    Event,
    InputCommitted,
    MessageCommitted,
    Payload,
    ReasoningDelta,
    Run,
    RunFinished,
    RunQueued,
    RunStarted,
    TextDelta,
    TranscriptEntry,
    UsageReported,
    Worker,
    WorkerState,
    WorkerStateChanged,
)
from runtime_server.store import _codec as codec
from runtime_server.store import _sqlite_bundles as bundle_rows
from runtime_server.store import _sqlite_chunks as chunks
from runtime_server.store import _sqlite_json as fast
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

ChunkRow = tuple[int, int, str, int, bytearray]

Memo = dict[int, str]
"""Run and message JSON already encoded in this transaction, by ``id()`` of the run (positive
keys) or message (negative): valid only while every object it saw is alive (the batches being
committed hold them)."""

_STATE_CHANGES: dict[tuple[WorkerState, WorkerState], str] = {
    (a, b): codec._dumps_text(codec._PAYLOADS["worker_state_changed"][1](WorkerStateChanged(a, b)))
    for a in WorkerState
    for b in WorkerState
}
_ENTRY_KINDS: dict[type[Any], str] = {
    InputCommitted: "input_committed",
    MessageCommitted: "message_committed",
}
_RUN_KINDS: dict[type[Any], str] = {
    RunQueued: "run_queued",
    RunStarted: "run_started",
    RunFinished: "run_finished",
}


def payload_json(payload: Payload, memo: Memo) -> tuple[str, str]:
    """``codec.encode_payload`` as text, with shortcuts that write the very text it writes
    (tests pin that): text deltas, worker state changes and usage without building a dict, and a
    run's JSON once per transaction (``_sqlite_json``)."""
    cls = payload.__class__
    if cls is TextDelta or cls is ReasoningDelta:
        text = codec._encode_str(payload.text)  # type: ignore[union-attr]
        return ("text_delta" if cls is TextDelta else "reasoning_delta"), '{"text":' + text + "}"
    if cls is WorkerStateChanged:
        p: WorkerStateChanged = payload  # type: ignore[assignment]
        return "worker_state_changed", _STATE_CHANGES[p.previous, p.state]
    kind = _RUN_KINDS.get(cls)
    if kind is not None:
        return kind, '{"run":' + _run_json(payload.run, memo, True) + "}"  # type: ignore[union-attr]
    if cls is InputCommitted or cls is MessageCommitted:
        e: TranscriptEntry = payload.entry  # type: ignore[union-attr]
        entry = fast.entry_json(e, _message_json(e.message, memo))
        return _ENTRY_KINDS[cls], '{"entry":' + entry + "}"
    if cls is UsageReported:
        usage = fast.usage_json(payload.usage) or "{}"  # type: ignore[union-attr]
        return "usage_reported", '{"usage":' + usage + "}"
    kind = codec._KIND_OF.get(cls)
    if kind is None:
        kind, body = codec.encode_payload(payload)  # (raises CodecError)
        return kind, body.decode("utf-8", "surrogatepass")
    return kind, codec._dumps_text(codec._PAYLOADS[kind][1](payload))


def encode_run(run: Run, memo: Memo | None, *, with_input: bool = True) -> bytearray:
    """``codec.encode_run``, once per ``memo``."""
    if memo is None:
        return fast.blob(fast.run_json(run, with_input=with_input))
    return fast.blob(_run_json(run, memo, with_input))


def _run_json(run: Run, memo: Memo, with_input: bool) -> str:
    # the form without the input is a different text only when the run has one
    key = id(run) * 2 + (not with_input and bool(run.input_text))
    text = memo.get(key)
    if text is None:
        text = memo[key] = fast.run_json(run, with_input=with_input)
    return text


def chunk_rows(events: Sequence[Event], memo: Memo) -> list[ChunkRow]:
    """One transaction's events (in seq order) as ``event_chunks`` rows (``_sqlite_chunks``): one
    per worker (a worker's stretch longer than ``CHUNK_MAX_EVENTS`` split), in ``last_seq``
    order, each body encoded once."""
    if not events:
        return []
    tx_first = events[0].seq
    groups: dict[str, list[Event]] = {}
    for e in events:
        group = groups.get(e.worker_id)
        if group is None:
            groups[e.worker_id] = [e]
        else:
            group.append(e)
    rows: list[ChunkRow] = []
    limit = chunks.CHUNK_MAX_EVENTS
    for worker_id, group in groups.items():
        for i in range(0, len(group), limit):
            part = group[i : i + limit] if len(group) > limit else group
            items: list[str] = []
            run_id = ""
            for e in part:
                kind, body = payload_json(e.payload, memo)
                if e.run_id == run_id:
                    items.append(f'["{kind}",{body}]')
                else:
                    run_id = e.run_id
                    items.append(f'["{kind}",{body},{codec._encode_str(run_id)}]')
            packed = chunks.pack([e.seq for e in part], [e.time for e in part], items)
            rows.append((part[-1].seq, tx_first, worker_id, len(part), packed))
    if len(rows) > 1:
        rows.sort(key=_last_seq)
    return rows


def _last_seq(row: ChunkRow) -> int:
    return row[0]


# Chunks go in with multi-row INSERTs of exactly the rows at hand, up to _MAX_ROWS a statement:
# one statement step per transaction for a typical one (each execute releases and retakes the GIL
# around its reset and step, which the busy event loop holds, and costs its own binding work). A
# statement per row count up to _MAX_ROWS (in the connection's statement cache, 128 by default;
# the writer's other statements are ~25).
_MAX_ROWS = 32
_INSERT_CHUNKS = [
    "INSERT INTO event_chunks VALUES " + ",".join(["(?, ?, ?, ?, ?)"] * n)
    for n in range(_MAX_ROWS + 1)
]


def chunk_statements(rows: Sequence[ChunkRow]) -> list[tuple[str, list[Any]]]:
    """``rows`` (in seq order) as INSERTs of ``_MAX_ROWS`` rows and one of the rest."""
    out: list[tuple[str, list[Any]]] = []
    i, n = 0, len(rows)
    while i < n:
        size = min(_MAX_ROWS, n - i)
        out.append((_INSERT_CHUNKS[size], [value for row in rows[i : i + size] for value in row]))
        i += size
    return out


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


# A run is rewritten in place: its worker never changes, so the runs_by_worker index entry stays
# as it is (INSERT OR REPLACE deleted and reinserted it, one more page in the WAL per commit that
# rewrites a run: a run is put in both of its transactions).
_PUT_RUN = (
    "INSERT INTO runs (run_id, worker_id, body) VALUES (?, ?, ?)"
    " ON CONFLICT (run_id) DO UPDATE SET body = excluded.body"
)
# A run's input text has a row of its own, written only by the puts that carry it: a text in the
# run's record would be rewritten with it at every put (a long input: its whole overflow chain).
# Keyed by worker first, so deleting a worker's is a range of the primary key (no index).
_PUT_RUN_INPUT = "INSERT OR REPLACE INTO run_inputs (worker_id, run_id, text) VALUES (?, ?, ?)"
_PUT_WORKER = "INSERT OR REPLACE INTO workers (worker_id, body) VALUES (?, ?)"
_PUT_TRANSCRIPT = (
    # REPLACE, not INSERT: writing the entry at an index again states the same fact. ``seq``:
    # the seq of the event that committed the entry (NULL: not known).
    "INSERT OR REPLACE INTO transcript (worker_id, idx, run_id, created_at, body, seq)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


class Statements:
    """One transaction's statements for its mutations, every value encoded before the transaction
    begins (see :func:`plan`), grouped by table.

    Why grouped: statements on different tables commute (no triggers, no foreign keys, and each
    statement touches one table), so keeping each table's own order keeps the result exactly that
    of applying the mutations in order, while the same statement for several rows (the puts of
    many runs committed together) becomes one ``executemany``."""

    __slots__ = ("_tables",)

    def __init__(self) -> None:
        self._tables: dict[str, list[tuple[str, list[tuple[Any, ...]]]]] = {}

    def add(self, table: str, sql: str, params: tuple[Any, ...]) -> None:
        group = self._tables.get(table)
        if group is None:
            self._tables[table] = [(sql, [params])]
        elif group[-1][0] == sql:
            group[-1][1].append(params)
        else:
            group.append((sql, [params]))

    def run(self, conn: sqlite3.Connection) -> None:
        for group in self._tables.values():
            for sql, rows in group:
                if len(rows) == 1:
                    conn.execute(sql, rows[0])
                else:
                    conn.executemany(sql, rows)


def plan(mutations: Sequence[Mutation], memo: Memo) -> Statements:
    """The statements that apply ``mutations`` (in order), superseded puts skipped."""
    out = Statements()
    skip = superseded(mutations) if len(mutations) > 1 else ()
    for i, mutation in enumerate(mutations):
        if i in skip:
            if mutation.__class__ is PutRun:
                _put_run_input(out, mutation.run)
            continue
        add(out, mutation, memo)
    return out


def _message_json(message: Message, memo: Memo | None) -> str:
    # the same message is in its event (InputCommitted, MessageCommitted) and its transcript row
    if memo is None:
        return fast.message_json(message)
    key = -id(message)  # (runs' keys are positive)
    text = memo.get(key)
    if text is None:
        text = memo[key] = fast.message_json(message)
    return text


def _put_run_input(out: Statements, run: Run) -> None:
    text = run.input_text
    if not text:
        return
    value: str | bytes = text
    if not text.isascii():
        # Bound as UTF-8 bytes (surrogatepass, as event bodies are; the reads decode them): a
        # non-ASCII str bound as text gets its UTF-8 form cached inside it by the sqlite3 module,
        # which doubled the memory of the Runtime's own string for its lifetime, at a moment set
        # by the writer thread (the transcript window measures its entries' strings), and a lone
        # surrogate (the Runtime refuses them on input, but the store must not depend on it)
        # cannot be bound as text at all.
        value = text.encode("utf-8", "surrogatepass")
    out.add("run_inputs", _PUT_RUN_INPUT, (run.worker_id, run.run_id, value))


def add(out: Statements, mutation: Mutation, memo: Memo | None = None) -> None:
    cls = mutation.__class__
    if cls is PutRun:
        r: Run = mutation.run  # type: ignore[union-attr]
        _put_run_input(out, r)
        out.add("runs", _PUT_RUN, (r.run_id, r.worker_id, encode_run(r, memo, with_input=False)))
    elif cls is PutWorker:
        w: Worker = mutation.worker  # type: ignore[union-attr]
        out.add("workers", _PUT_WORKER, (w.worker_id, fast.blob(fast.worker_json(w))))
    elif cls is AppendTranscript:
        e = mutation.entry  # type: ignore[union-attr]
        body = fast.blob(_message_json(e.message, memo))
        out.add(
            "transcript",
            _PUT_TRANSCRIPT,
            (e.worker_id, e.index, e.run_id, e.created_at, body, e.seq or None),
        )
    elif bundle_rows.statements(out.add, mutation):  # config bundles and profile snapshots
        return
    elif isinstance(mutation, DeleteWorkerData):
        wid = (mutation.worker_id,)
        out.add("workers", "DELETE FROM workers WHERE worker_id = ?", wid)
        out.add("runs", "DELETE FROM runs WHERE worker_id = ?", wid)
        out.add("transcript", "DELETE FROM transcript WHERE worker_id = ?", wid)
        out.add("run_inputs", "DELETE FROM run_inputs WHERE worker_id = ?", wid)
        # Only the worker's own keys: "create" keys stay, as they do in the Runtime's memory.
        out.add("request_keys", "DELETE FROM request_keys WHERE scope = ?", wid)
    elif isinstance(mutation, PutRequestKey):
        k = mutation
        out.add(
            "request_keys",
            "INSERT OR REPLACE INTO request_keys (scope, request_id, fingerprint, result, seq)"
            " VALUES (?, ?, ?, ?, ?)",
            (k.scope, k.request_id, k.fingerprint, k.result, k.seq),
        )
    elif isinstance(mutation, PutMeta):
        out.add(
            "meta",
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
            (mutation.key, mutation.value),
        )
    elif isinstance(mutation, PutDiagnostic):
        _, diag = codec.encode_payload(mutation.diagnostic)
        out.add(
            "diagnostics",
            "INSERT OR REPLACE INTO diagnostics (number, body) VALUES (?, ?)",
            (mutation.number, diag),
        )
        out.add(
            "diagnostics",
            "DELETE FROM diagnostics WHERE number <= ?",
            (mutation.number - max(1, mutation.keep),),
        )
    else:  # pragma: no cover - the Mutation union is closed
        raise TypeError(f"unknown mutation {mutation!r}")
