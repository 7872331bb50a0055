"""The SQLite writer builds the JSON of runs, workers, usage, transcript entries and messages as
text (issue 15 item 6); what it stores must be exactly the codec's bytes — the stored format is
the codec's, and a file written by the fast path must read back with any build. Checked through a
real store and file, for the values that leave the fast path too: ints where floats are declared,
bools, non-finite and negative-zero floats, lone surrogates, nested fields, tool calls, and
timestamps written again in a later transaction (their text then comes from a cache) or so many
that the cache starts over."""

from __future__ import annotations

import math
import sqlite3
from dataclasses import fields, replace
from pathlib import Path

from chunk_rows import kinds_and_bodies
from store_samples import FULL_MESSAGE, FULL_USAGE, entry, event, run, worker

from engine import Message, ReasoningBlock, Role, StopReason, Usage
from runtime_server.model import (
    InputCommitted,
    MessageCommitted,
    Payload,
    Run,
    RunError,
    RunFinished,
    RunStarted,
    RunState,
    TranscriptEntry,
    UsageReported,
    Worker,
    WorkerState,
)
from runtime_server.store import AppendTranscript, Mutation, PutRun, PutWorker, SqliteStore, codec

_FLOATS = [0.0, -0.0, 1.0, 0.1, 1_700_000_000.125, 1e20, 1e-7, -3.5, math.inf, -math.inf, math.nan]


def _runs() -> list[Run]:
    out = [
        run(),
        run(error=None, usage=Usage(), stop_reason="", input_text=""),
        Run("r", "w2", RunState.COMPLETED, 0.0),
        run(input_text="lone \ud83d surrogate", stop_reason='quote " and \\ \n'),
        run(error=RunError("E", "\udc00 bad"), usage=Usage(0, 0, 0, 0, 7)),
        run(created_at=5, started_at=True, finished_at=2**70),  # not floats: the codec's text
        run(usage=Usage(2**64, 1, 1, 1, 1)),
    ]
    out += [run(created_at=f, started_at=f, finished_at=f) for f in _FLOATS]
    return [replace(r, run_id=f"r{i}") for i, r in enumerate(out)]


def _workers() -> list[Worker]:
    plain = worker(labels={}, workspace=None, config_bundle=None)
    out = [
        worker(),  # every nested field set
        Worker("w", "rt", WorkerState.IDLE, "echo"),
        plain,
        replace(plain, tools=None, capabilities=()),
        replace(plain, tools=(), queued_runs=True),
        replace(plain, labels={"a": "b"}),
        replace(plain, display_name="\ud800 ✓"),
        replace(plain, usage=Usage(1, 0, 0, 0, 0)),
    ]
    out += [replace(plain, created_at=f, queued_runs=i) for i, f in enumerate(_FLOATS)]
    return [replace(w, worker_id=f"w{i}") for i, w in enumerate(out)]


def _messages() -> list[Message]:
    return [
        FULL_MESSAGE,  # tool calls
        Message(Role.USER, "hi"),
        Message(Role.TOOL),
        Message(Role.ASSISTANT, "a\ud83d", stop_reason=StopReason.END_TURN, incomplete=True),
        Message(
            Role.ASSISTANT,
            "t",
            reasoning="r\n",
            reasoning_signature="s",
            tool_call_id="c",
            tool_name="n",
            is_error=True,
            reasoning_field="reasoning_content",
        ),
        Message(Role.ASSISTANT, reasoning_blocks=(ReasoningBlock("thinking", "x", "", ""),)),
    ]


def _batch() -> tuple[list[Payload], list[Mutation]]:
    payloads: list[Payload] = []
    mutations: list[Mutation] = []
    for r in _runs():
        payloads += [RunStarted(r), RunFinished(r)]
        mutations.append(PutRun(r))
    for w in _workers():
        mutations.append(PutWorker(w))
    for i, m in enumerate(_messages()):
        e = entry(worker_id="wt", index=i, message=m)
        payloads += [InputCommitted(e), MessageCommitted(replace(e, seq=42, created_at=0.0))]
        mutations.append(AppendTranscript(e))
    payloads += [UsageReported(u) for u in (Usage(), FULL_USAGE, Usage(0, 3, 0, 0, 0))]
    return payloads, mutations


def _check_file(path: Path, payloads: list[Payload]) -> None:
    with sqlite3.connect(path) as conn:
        events = kinds_and_bodies(conn)
        runs = dict(conn.execute("SELECT run_id, body FROM runs"))
        workers = dict(conn.execute("SELECT worker_id, body FROM workers"))
        transcript = dict(conn.execute("SELECT idx, body FROM transcript WHERE worker_id = 'wt'"))
    conn.close()
    assert events[-len(payloads) :] == [codec.encode_payload(p) for p in payloads]
    for r in _runs():
        assert runs[r.run_id] == codec.encode_run(r, with_input=False)
    for w in _workers():
        assert workers[w.worker_id] == codec.encode_worker(w)
    for i, m in enumerate(_messages()):
        assert transcript[i] == codec.encode_message(m)


async def test_stored_json_is_the_codecs_bytes(tmp_path: Path) -> None:
    path = tmp_path / "runtime.db"
    store = SqliteStore(path, retention_interval=3600.0)
    await store.open("rt-new")
    payloads, mutations = _batch()
    store.write([event(i + 1, payload=p) for i, p in enumerate(payloads)], mutations)
    await store.flush()
    # the same values again in a later transaction: their timestamps' text comes from the cache
    n = len(payloads)
    store.write([event(n + i + 1, payload=p) for i, p in enumerate(payloads)], mutations)
    await store.flush()
    _check_file(path, payloads)
    # so many new timestamps that the cache starts over, then the first values once more
    many = [PutRun(run(f"m{i}", created_at=1e9 + i / 8)) for i in range(4200)]
    store.write([event(2 * n + 1)], many)
    await store.flush()
    store.write([event(2 * n + 2 + i, payload=p) for i, p in enumerate(payloads)], mutations)
    await store.close()
    _check_file(path, payloads)
    with sqlite3.connect(path) as conn:
        bodies = dict(conn.execute("SELECT run_id, body FROM runs WHERE run_id LIKE 'm%'"))
    conn.close()
    assert len(bodies) == len(many)
    for put in many[::97]:
        assert bodies[put.run.run_id] == codec.encode_run(put.run, with_input=False)


def test_a_new_record_field_reaches_the_fast_json() -> None:
    """The writer's JSON names each field of these records itself, where the codec walks the
    dataclass: a field added to a record would be stored by one and silently dropped by the
    other. So the fields are pinned here — a new one must be added to the writer's JSON
    (``runtime_server/store/_sqlite_json.py``) and to the samples above, then listed here."""
    known = {
        Run: "run_id worker_id state created_at input_text started_at finished_at usage error"
        " stop_reason",
        Worker: "worker_id runtime_id state profile display_name labels active_run_id created_at"
        " usage workspace config_bundle queued_runs capabilities tools",
        Message: "role text reasoning reasoning_signature tool_calls tool_call_id tool_name"
        " is_error stop_reason incomplete reasoning_blocks reasoning_field",
        TranscriptEntry: "worker_id index run_id created_at message seq",
        Usage: "input_tokens output_tokens cache_read_tokens cache_write_tokens reasoning_tokens",
    }
    for record, names in known.items():
        assert tuple(f.name for f in fields(record)) == tuple(names.split()), record.__name__
