"""Damaged store files, through real ``serve`` processes (issue 7, item 5).

- a random page overwritten (several trials, fixed seed): ``serve`` refuses to start with one
  line naming the file (exit 2, no traceback) and leaves it byte-identical — or, should the
  integrity check miss the damage, every answer is OK or STORE_FAILURE (never INTERNAL/UNKNOWN)
  and nothing is written into the file once the damage was seen;
- the last page overwritten: the same clean "cannot open store" refusal;
- the WAL of a killed process (≈1,500 events, most of them only in the WAL) truncated or partly
  overwritten: SQLite would silently recover an older log and hand the lost seqs out again; the
  seq high-water mark makes ``serve`` refuse instead, leaving the files as they were.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from serving import (
    BANNER,
    START_TIMEOUT,
    Finished,
    ServeProcessFactory,
    all_events,
    env,
    run_serve,
    serve_argv,
)

from runtime_client import (
    Accepted,
    RunFinished,
    RuntimeClient,
    RuntimeServiceError,
    StoreFailure,
    StoreState,
)
from runtime_server.store import SqliteStore

DB = "runtime.sqlite3"
PAGE = 4096
TRIALS = 8
SEED = 20261127
OK_REASONS = {"STORE_FAILURE"}
T = TypeVar("T")


async def populated(data: Path, serve_process: ServeProcessFactory) -> int:
    """A store written by a real server (workers, runs, transcripts, events), stopped cleanly.
    Returns its last seq."""
    sp = await serve_process(data)
    client = sp.client()
    for w in range(6):
        worker = (await client.create_worker(display_name=f"w{w}")).worker.worker_id
        for i in range(4):
            accepted = await client.send_input(worker, f"input {i} " + "lorem ipsum " * 40)
            await client.wait_run(accepted.run.run_id, timeout=30)
    last = (await client.get_runtime()).last_seq
    assert sp.terminate() == 0
    assert not (data / f"{DB}-wal").exists()  # checkpointed into the main file
    return last


def damaged_copy(src: Path, dst: Path, damage: Callable[[bytearray], None]) -> Path:
    dst.mkdir()
    for name in (DB, f"{DB}.hwm"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
    raw = bytearray((dst / DB).read_bytes())
    damage(raw)
    (dst / DB).write_bytes(bytes(raw))
    return dst


def snapshot(data: Path) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted(data.iterdir())
        if p.name.endswith(("3", "hwm", "wal"))
    }


def start_or_refuse(data: Path) -> tuple[Finished | None, subprocess.Popen[bytes] | None, int]:
    """Run ``serve``: either it exits (refused: the Finished) or it serves (the process, port)."""
    err_path = data.with_name(data.name + ".stderr")  # a file: a serving process is never read
    with err_path.open("wb") as err:
        proc = subprocess.Popen(serve_argv(data), stdout=subprocess.PIPE, stderr=err, env=env())
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT
    line = proc.stdout.readline().decode(errors="replace")
    if (match := BANNER.search(line)) is not None:
        return None, proc, int(match["port"])
    out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
    stderr = err_path.read_text(errors="replace")
    return Finished(proc.returncode, line + out.decode(errors="replace"), stderr), None, 0


def assert_refused(done: Finished, path: Path, expected: str = "") -> None:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    message = done.stderr.strip().splitlines()[-1]
    assert message.startswith("error: cannot open store"), message
    assert str(path) in message
    assert expected in message


async def reads_answer_cleanly(port: int) -> int:
    """Every read through the API: OK or STORE_FAILURE. Returns the number of STORE_FAILUREs."""
    failures = 0
    async with RuntimeClient(f"127.0.0.1:{port}") as client:

        async def attempt(call: Callable[[], Awaitable[T]]) -> T | None:
            nonlocal failures
            try:
                return await call()
            except StoreFailure:
                failures += 1
            except RuntimeServiceError as exc:
                raise AssertionError(f"{type(exc).__name__}: {exc}") from exc
            return None

        cursor = 0
        while True:
            page = await attempt(partial(client.list_events, after_seq=cursor))
            if page is None or not page.events:
                break
            cursor = page.events[-1].seq
        workers = await client.list_workers(page_size=100)
        for w in workers.items:
            await attempt(partial(client.get_transcript, w.worker_id))
            await attempt(partial(client.list_events, worker_id=w.worker_id))
    return failures


async def test_random_page_overwritten(serve_process: ServeProcessFactory, tmp_path: Path) -> None:
    src = tmp_path / "clean"
    await populated(src, serve_process)
    pages = (src / DB).stat().st_size // PAGE
    rng = random.Random(SEED)
    refused = started = 0
    for trial in range(TRIALS):
        page = rng.randrange(1, pages)  # page 0 holds the header: the other tests cover it
        noise = rng.randbytes(PAGE)

        def overwrite(raw: bytearray, page: int = page, noise: bytes = noise) -> None:
            raw[page * PAGE : (page + 1) * PAGE] = noise

        data = damaged_copy(src, tmp_path / f"trial{trial}", overwrite)
        before = snapshot(data)
        done, proc, port = await asyncio.to_thread(start_or_refuse, data)
        if done is not None:
            refused += 1
            assert_refused(done, data / DB, "integrity check failed")
            assert snapshot(data) == before, f"trial {trial}: the refused file was written"
            continue
        # The check missed it: reads must still answer cleanly, and once the damage is seen,
        # nothing more goes into the file.
        assert proc is not None
        started += 1
        try:
            if await reads_answer_cleanly(port):
                seen = snapshot(data)
                async with RuntimeClient(f"127.0.0.1:{port}") as client:
                    with pytest.raises(StoreFailure):
                        await client.create_worker()
                proc.terminate()
                proc.wait(timeout=START_TIMEOUT)
                assert snapshot(data)[DB] == seen[DB]
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=START_TIMEOUT)
    print(
        f"\nrandom page overwritten: {TRIALS} trials, {refused} refused at start, {started} started"
    )
    assert refused + started == TRIALS


async def test_last_page_overwritten(serve_process: ServeProcessFactory, tmp_path: Path) -> None:
    src = tmp_path / "clean"
    await populated(src, serve_process)

    def overwrite_last(raw: bytearray) -> None:
        raw[-PAGE:] = random.Random(SEED).randbytes(PAGE)

    data = damaged_copy(src, tmp_path / "damaged", overwrite_last)
    before = snapshot(data)
    done = await asyncio.to_thread(run_serve, serve_argv(data))
    assert_refused(done, data / DB)
    assert "serving on" not in done.stdout
    assert snapshot(data) == before


async def run_finished_in_the_log(client: RuntimeClient, worker: str, accepted: Accepted) -> None:
    """Wait until the run's RunFinished is committed: a subscription delivers only committed
    events, and the log's last_seq covers one by the time it is delivered."""
    stream = client.subscribe(worker, after_seq=accepted.seq)
    async with contextlib.aclosing(stream), asyncio.timeout(START_TIMEOUT):
        async for event in stream:
            payload = event.payload
            if isinstance(payload, RunFinished) and payload.run.run_id == accepted.run.run_id:
                return


def truncate_half(wal: Path) -> None:
    size = wal.stat().st_size
    with wal.open("r+b") as f:
        f.truncate(size // 2)


def overwrite_middle(wal: Path) -> None:
    size = wal.stat().st_size
    with wal.open("r+b") as f:
        f.seek(size // 3)
        f.write(random.Random(SEED).randbytes(3 * PAGE))


@pytest.mark.parametrize("damage", [truncate_half, overwrite_middle])
async def test_damaged_wal_after_kill_9_refuses_to_reuse_seqs(
    serve_process: ServeProcessFactory, tmp_path: Path, damage: Callable[[Path], None]
) -> None:
    data = tmp_path / "data"
    sp = await serve_process(data)
    client = sp.client()
    worker = (await client.create_worker()).worker.worker_id
    db = data / DB
    # A reader holding an early snapshot keeps the checkpointer from copying later commits into
    # the main file: they stay only in the WAL, as they would right before a crash. (Read-only: it
    # never checkpoints, not even when it closes last.)
    reader = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM event_chunks").fetchone()
    try:
        while (await client.get_runtime()).last_seq < 1500:
            accepted = await client.send_input(worker, " ".join(f"w{i}" for i in range(60)))
            await client.wait_run(accepted.run.run_id, timeout=30)
        # wait_run returns once the run is terminal, which can be a moment before its last events
        # (RunFinished, the worker's IDLE) commit and raise last_seq and the high-water mark: wait
        # for the settled sign, the RunFinished itself, so that `seen` is every seq committed.
        await run_finished_in_the_log(client, worker, accepted)
        seen = (await client.get_runtime()).last_seq  # published: clients may have seen these
        sp.kill9()
    finally:
        reader.close()
    wal = data / f"{DB}-wal"
    assert wal.exists()
    # Precondition: most of the log exists only in the WAL.
    main_only = tmp_path / "main-only"
    main_only.mkdir()
    shutil.copy2(db, main_only / DB)
    probe = sqlite3.connect(f"{(main_only / DB).resolve().as_uri()}?immutable=1", uri=True)
    in_main = probe.execute("SELECT max(last_seq) FROM event_chunks").fetchone()[0] or 0
    probe.close()
    assert in_main < seen // 2, (in_main, seen)

    damage(wal)
    (data / f"{DB}.lock").unlink(missing_ok=True)
    before = snapshot(data)
    done = await asyncio.to_thread(run_serve, serve_argv(data))
    assert_refused(done, db)
    assert "high-water" in done.stderr or "not a readable" in done.stderr, done.stderr
    assert snapshot(data) == before  # nothing written: not the database, not the WAL

    # The store on its own says the same (and names the mark and the lost range).
    with pytest.raises(Exception, match=r"high-water|not a readable") as info:
        await SqliteStore(db).open("rt-x")
    print(f"\ndamaged WAL ({damage.__name__}): {seen} seqs published; refused: {info.value}")
    assert snapshot(data) == before

    # The operator accepts the loss: the server starts and never hands out a seq it published.
    sp = await serve_process(data, extra=["--accept-lost-seqs"])
    client = sp.client()
    created = await client.create_worker()
    assert created.seq > seen
    survived = [e.seq for e in await all_events(client)]
    old = [s for s in survived if s <= seen]
    new = [s for s in survived if s > seen]
    assert old == list(range(1, len(old) + 1))  # what the WAL kept, as it was
    assert len(old) < seen  # what it lost stays lost, its seqs skipped:
    assert new[0] == seen + 1  # the log goes on right after the last seq ever published
    assert sp.terminate() == 0


async def test_damage_the_check_cannot_see(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    """A row whose bytes are damaged inside an intact page passes quick_check: the server starts;
    reading the row answers STORE_FAILURE (never INTERNAL), the store turns DAMAGED (health
    NOT_SERVING, changes refused) and nothing more is written into the file, not even the
    checkpoint at shutdown."""
    data = tmp_path / "data"
    last = await populated(data, serve_process)
    conn = sqlite3.connect(data / DB)
    # the newest seq of a row of the log (an event chunk) halfway through it
    (victim,) = conn.execute(
        "SELECT min(last_seq) FROM event_chunks WHERE last_seq >= ?", (last // 2,)
    ).fetchone()
    with conn:
        conn.execute(
            "UPDATE event_chunks SET body = ? WHERE last_seq = ?", (b"\x00\xffnot json", victim)
        )
    conn.close()
    (data / f"{DB}.lock").unlink(missing_ok=True)

    sp = await serve_process(data)
    client = sp.client()
    assert await reads_answer_cleanly(sp.port) > 0
    info = await client.get_runtime()
    assert info.store_state is StoreState.DAMAGED, info
    health = health_pb2_grpc.HealthStub(client.channel)
    reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    seen = snapshot(data)
    with pytest.raises(StoreFailure):
        await client.create_worker()
    events = (await client.list_events(after_seq=victim)).events  # after the damaged row
    assert events
    assert events[0].seq == victim + 1
    assert sp.terminate() == 0
    assert "Traceback" not in sp.stderr(), sp.stderr()[-3000:]
    after = snapshot(data)
    assert after[DB] == seen[DB]  # nothing went into the damaged file
    # The WAL is either untouched or gone: SQLite deletes it when the last connection closes,
    # but only after a complete checkpoint, so with the main file unchanged every frame it held
    # was already in the main file (a stale WAL): nothing was written and nothing lost.
    assert f"{DB}-wal" not in after or after[f"{DB}-wal"] == seen.get(f"{DB}-wal")
