"""THE crash test (API.md guarantees 3 and 5): a real ``serve`` process with 20 workers streaming
is killed with SIGKILL mid-stream, several times, and restarted on the same data dir.

A subscriber follows the whole Runtime across every restart, resuming from the last seq it saw.
Across all cycles it must see every seq exactly once (no gap, no duplicate), the seqs it saw before
a crash must still hold the same events afterwards (never lost, never reused), every acknowledged
input must be in its worker's transcript, every run left active or queued by a crash must be
INTERRUPTED with exactly one RunFinished, and the recovered workers must take new input.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from serving import ServeProcessFactory, all_events, eventually, write_config

from runtime_client import (
    Accepted,
    BusyPolicy,
    Diagnostic,
    Event,
    InputCommitted,
    Role,
    RunFinished,
    RunQueued,
    RunState,
    RuntimeClient,
    RuntimeServiceError,
    SubscriberLagging,
    TextDelta,
    WorkerState,
)

WORKERS = 20
CYCLES = 3
WORDS = 60  # per input; with delay_ms = 10 a run streams for >= 0.6 s
QUEUED_EVERY = 2  # every 2nd worker also gets an ENQUEUE'd input, still queued at the crash
DELTAS_BEFORE_KILL = 150  # kill once this many TextDeltas of the cycle were seen: mid-stream


SHORT_EVERY = 4  # every 4th worker's first input is short: it completes before the crash and the
# input queued behind it starts, so the crash finds runs completed, running and queued


def long_text(tag: str, words: int = WORDS) -> str:
    return " ".join(f"{tag}.{i}" for i in range(words))


@dataclass
class Follower:
    """A whole-Runtime subscriber that remembers every event and resumes from its last seq."""

    events: list[Event] = field(default_factory=list)

    @property
    def last_seq(self) -> int:
        return self.events[-1].seq if self.events else 0

    def count(self, kind: type, since: int = 0) -> int:
        return sum(1 for e in self.events[since:] if isinstance(e.payload, kind))

    async def follow(self, client: RuntimeClient) -> RuntimeServiceError | None:
        """Until the stream breaks (the process died) or the task is cancelled."""
        while True:
            events = client.subscribe(after_seq=self.last_seq, resume=False)
            try:
                async with contextlib.aclosing(events):
                    async for event in events:
                        self.events.append(event)
                return None  # the server ended the stream
            except SubscriberLagging:
                continue  # resume from the last seq, like any client would
            except RuntimeServiceError as exc:
                return exc


@dataclass(frozen=True)
class Ack:
    worker_id: str
    text: str
    request_id: str
    accepted: Accepted
    cycle: int


async def send_all(client: RuntimeClient, workers: list[str], cycle: int) -> list[Ack]:
    async def send(i: int, w: str, policy: BusyPolicy, n: int) -> Ack:
        short = n == 0 and i % SHORT_EVERY == SHORT_EVERY - 2
        text = long_text(f"c{cycle}w{i}n{n}", 3 if short else WORDS)
        request_id = f"c{cycle}-w{i}-n{n}"
        acc = await client.send_input(w, text, request_id=request_id, busy_policy=policy)
        return Ack(w, text, request_id, acc, cycle)

    first = await asyncio.gather(*(send(i, w, BusyPolicy.REJECT, 0) for i, w in enumerate(workers)))
    queued = await asyncio.gather(
        *(send(i, w, BusyPolicy.ENQUEUE, 1) for i, w in enumerate(workers) if i % QUEUED_EVERY == 0)
    )
    return [*first, *queued]


async def check_recovered(client: RuntimeClient, acks: list[Ack], runtime_id: str) -> None:
    """After a restart: same runtime, every worker IDLE, every acknowledged run terminal, its input
    in the transcript if it started, and INTERRUPTED if the crash caught it."""
    info = await client.get_runtime()
    assert info.runtime_id == runtime_id
    assert info.store_kind == "sqlite"
    assert (info.active_runs, info.queued_runs) == (0, 0)
    workers = [w async for w in client.iter_workers()]
    assert len(workers) == WORKERS
    assert {w.state for w in workers} == {WorkerState.IDLE}
    assert all(not w.active_run_id for w in workers)

    transcripts = {
        w.worker_id: [e async for e in client.iter_transcript(w.worker_id)] for w in workers
    }
    for entries in transcripts.values():
        assert [e.index for e in entries] == list(range(len(entries)))
    interrupted = 0
    for ack in acks:
        run = await client.get_run(ack.accepted.run.run_id)
        assert run.terminal, run
        if run.state is RunState.INTERRUPTED:
            interrupted += 1
            assert run.error is not None
            assert run.error.code == "INTERRUPTED"
        else:
            assert run.state is RunState.COMPLETED, run
        if ack.accepted.run.state is RunState.RUNNING or run.started_at:
            inputs = [
                e.message.text
                for e in transcripts[ack.worker_id]
                if e.run_id == run.run_id and e.message.role is Role.USER
            ]
            assert inputs == [ack.text], f"acknowledged input of {run.run_id} lost: {inputs}"
        else:
            assert run.state is RunState.INTERRUPTED  # still queued at the crash
    # the kill came mid-stream: runs were active (and inputs queued) when it hit
    assert interrupted >= 1
    # idempotency keys survive: repeating a request returns the first run and seq
    for ack in (acks[0], acks[-1]):
        again = await client.send_input(
            ack.worker_id,
            ack.text,
            request_id=ack.request_id,
            busy_policy=BusyPolicy.ENQUEUE if ack.request_id.endswith("n1") else BusyPolicy.REJECT,
        )
        assert (again.run.run_id, again.seq) == (ack.accepted.run.run_id, ack.accepted.seq)


async def test_kill9_mid_stream_then_resume_without_gap_or_loss(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "slow.toml", delay_ms=10)
    follower = Follower()
    acks: list[Ack] = []
    seen_before_crash: list[list[Event]] = []
    runtime_id = ""
    workers: list[str] = []

    for cycle in range(CYCLES + 1):
        sp = await serve_process(data, config=config)
        client = sp.client()
        if cycle == 0:
            runtime_id = (await client.get_runtime()).runtime_id
            created = await asyncio.gather(
                *(
                    client.create_worker(profile="slow", request_id=f"create-{i}")
                    for i in range(WORKERS)
                )
            )
            workers = [c.worker.worker_id for c in created]
        else:
            await check_recovered(client, [a for a in acks if a.cycle == cycle - 1], runtime_id)

        mark = len(follower.events)
        follow = asyncio.create_task(follower.follow(client))
        if cycle == CYCLES:
            break  # the last start only checks the recovery, then finishes below

        acks += await send_all(client, workers, cycle)
        await eventually(
            lambda mark=mark: follower.count(TextDelta, mark) >= DELTAS_BEFORE_KILL,
            what="the runs streaming",
        )
        sp.kill9()
        await asyncio.wait_for(follow, 30)  # its stream broke (or ended) with the process
        seen_before_crash.append(list(follower.events))

    # After the last restart: new input works on every recovered worker ...
    final = await asyncio.gather(
        *(client.send_input(w, f"after {CYCLES} crashes, w{i}") for i, w in enumerate(workers))
    )
    done = await asyncio.gather(*(client.wait_run(a.run.run_id, timeout=60) for a in final))
    assert {r.state for r in done} == {RunState.COMPLETED}
    # ... and the follower catches up with the head of the log.
    head = (await client.get_runtime()).last_seq
    await eventually(lambda: follower.last_seq >= head, what="the follower catching up")
    follow.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await follow

    seen = follower.events
    seqs = [e.seq for e in seen]
    # No gap, no duplicate: across 3 crashes the follower saw every seq exactly once, in order.
    assert seqs == list(range(1, len(seqs) + 1))

    # ListEvents agrees: the same events at the same seqs (a seq seen before a crash was committed
    # and was not reused after it).
    logged = await all_events(client)
    assert [e.seq for e in logged[: len(seen)]] == seqs

    def key(e: Event) -> tuple[int, str, str, str]:
        return (e.seq, e.worker_id, e.run_id, type(e.payload).__name__)

    assert [key(e) for e in logged[: len(seen)]] == [key(e) for e in seen]
    for before in seen_before_crash:
        assert [key(e) for e in before] == [key(e) for e in logged[: len(before)]]

    # Every acknowledged input: its RunQueued is in the log at the acknowledged seq, its input is
    # committed once, and its run finished exactly once.
    by_seq = {e.seq: e for e in logged}
    finished = Counter(e.payload.run.run_id for e in logged if isinstance(e.payload, RunFinished))
    committed = Counter(e.run_id for e in logged if isinstance(e.payload, InputCommitted))
    queued = {e.payload.run.run_id for e in logged if isinstance(e.payload, RunQueued)}
    for ack in acks:
        run_id = ack.accepted.run.run_id
        ev = by_seq[ack.accepted.seq]
        assert isinstance(ev.payload, RunQueued)
        assert ev.payload.run.run_id == run_id
        assert finished[run_id] == 1, f"{run_id} finished {finished[run_id]} times"
        assert committed[run_id] <= 1
    assert set(finished) == queued, "every run in the log finished exactly once"
    assert all(n == 1 for n in finished.values())

    # Each restart recorded its recovery.
    recovered = [
        e for e in logged if isinstance(e.payload, Diagnostic) and e.payload.code == "RECOVERED"
    ]
    assert len(recovered) == CYCLES
    assert sp.terminate() == 0
