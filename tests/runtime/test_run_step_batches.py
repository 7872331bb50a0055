"""A run's task writes what one of its steps produces as ONE store batch (runtime._steps): the
last step of a run — its last delta, the usage report, the committed message, RunFinished and
the worker going idle — reaches the store in one ``write``, as does a cancelled run's partial
answer with its RunFinished. Through a real Runtime on a real MemoryStore and a real SQLite
file, whose ``write`` is recorded (and then done as usual): the batches stay in seq order with
no gap, and every event is still committed and delivered to a subscriber once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from serving import eventually

from runtime_server.model import (
    Event,
    MessageCommitted,
    RunFinished,
    RunStarted,
    TextDelta,
    UsageReported,
    WorkerState,
    WorkerStateChanged,
)
from runtime_server.runtime import Runtime, parse_config
from runtime_server.store import MemoryStore, SqliteStore, Store

RUNNING, IDLE = WorkerState.RUNNING, WorkerState.IDLE
BOUND = 30.0  # seconds: a safety net only
CONFIG = {"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 200}}}}


class _Recording:
    """Records the events of every ``write`` (then writes them as usual)."""

    batches: list[list[Event]]

    def write(self, events: Sequence[Event], mutations: Sequence[Any] = ()) -> None:
        self.batches.append(list(events))
        super().write(events, mutations)  # type: ignore[misc]


class RecordingMemoryStore(_Recording, MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.batches = []


class RecordingSqliteStore(_Recording, SqliteStore):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.batches = []


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "memory":
        return RecordingMemoryStore()
    return RecordingSqliteStore(tmp_path / "runtime.db")


def _batch_of(batches: list[list[Event]], kind: type) -> list[type]:
    (batch,) = [b for b in batches if any(isinstance(e.payload, kind) for e in b)]
    return [e.payload.__class__ for e in batch]


def _check_order(batches: list[list[Event]]) -> None:
    seqs = [e.seq for b in batches for e in b]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # in order, no gap, none twice


async def test_a_runs_last_step_is_one_store_batch(store: Store) -> None:
    recording: Any = store
    async with Runtime(store=store) as rt:
        created = await rt.create_worker(profile="echo")
        wid = created.worker.worker_id
        sub = rt.subscribe(worker_id=wid, after_seq=created.seq)
        recording.batches.clear()
        accepted = await rt.send_input(wid, "hello there world")
        await rt.wait_run(accepted.run.run_id)
        seen: list[Event] = []
        async with asyncio.timeout(BOUND):
            while not seen or seen[-1].payload != WorkerStateChanged(RUNNING, IDLE):
                event = await sub.next()
                assert event is not None
                seen.append(event)
        sub.close()
        await rt.get_worker(wid)  # answered once everything appended is committed

    batches = [b for b in recording.batches if b]
    _check_order(batches)
    assert [e.seq for e in seen] == [e.seq for b in batches for e in b]  # all delivered, once
    # the run's last step, written together (it was five writes: one per append)
    assert _batch_of(batches, RunFinished) == [
        TextDelta,
        UsageReported,
        MessageCommitted,
        RunFinished,
        WorkerStateChanged,
    ]
    # SendInput's own batch is unchanged: written (and committed) before its answer
    assert RunStarted in _batch_of(batches, RunStarted)
    assert TextDelta not in _batch_of(batches, RunStarted)


async def test_a_cancelled_runs_partial_answer_and_finish_are_one_batch(store: Store) -> None:
    recording: Any = store
    async with Runtime(store=store, config=parse_config(CONFIG)) as rt:
        wid = (await rt.create_worker(profile="slow")).worker.worker_id
        accepted = await rt.send_input(wid, "one two three four five six")
        run_id = accepted.run.run_id

        async def streaming() -> bool:
            return any(isinstance(e.payload, TextDelta) for b in recording.batches for e in b)

        await eventually(streaming, within=BOUND)
        recording.batches.clear()
        cancelled = await rt.cancel_run(run_id)
        assert cancelled.state.name == "CANCELLED"

    batches = [b for b in recording.batches if b]
    _check_order(batches)
    finished = _batch_of(batches, RunFinished)
    assert finished[finished.index(MessageCommitted) :] == [
        MessageCommitted,
        RunFinished,
        WorkerStateChanged,
    ]
