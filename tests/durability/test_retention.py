"""Retention across a restart (API.md guarantee 3): GetRuntime reports the store and its limits,
oldest_seq moves with retention, and a cursor older than retention gets OUT_OF_RANGE /
CURSOR_EXPIRED carrying the oldest available seq — after a restart too, never a silent skip."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from serving import ServeProcessFactory, all_events, eventually, write_config

from runtime_client import BusyPolicy, CursorExpired, OutOfRange, RuntimeClient

RETENTION = 100


async def expect_expired(client: RuntimeClient, after_seq: int) -> int:
    """Both ListEvents and SubscribeEvents refuse the cursor; returns the oldest seq they name."""
    with pytest.raises(CursorExpired) as listed:
        await client.list_events(after_seq=after_seq)
    events = client.subscribe(after_seq=after_seq, resume=False)
    with pytest.raises(CursorExpired) as subscribed:
        async with contextlib.aclosing(events):
            await anext(events)
    for exc in (listed.value, subscribed.value):
        assert isinstance(exc, OutOfRange)
        assert exc.reason == "CURSOR_EXPIRED"
        assert exc.metadata["oldest_seq"] == str(exc.oldest_seq)
    assert listed.value.oldest_seq == subscribed.value.oldest_seq
    return listed.value.oldest_seq


async def test_expired_cursor_after_restart_names_the_oldest_seq(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "cfg.toml", delay_ms=0, event_retention_events=RETENTION)
    sp = await serve_process(data, config=config)
    client = sp.client()
    info = await client.get_runtime()
    assert info.store_kind == "sqlite"
    assert info.limits.event_retention_events == RETENTION
    assert info.oldest_seq == 0  # nothing logged yet

    w = (await client.create_worker()).worker.worker_id
    for i in range(8):  # ~30 events per run: well over the retention
        acc = await client.send_input(w, " ".join(f"word{i}.{j}" for j in range(20)))
        await client.wait_run(acc.run.run_id, timeout=30)
    info = await client.get_runtime()
    assert info.last_seq > 2 * RETENTION

    async def trimmed() -> bool:
        if (await client.get_runtime()).oldest_seq > info.last_seq - RETENTION:
            return True
        # Retention runs on the store's writer after a commit, at most once a second: keep the
        # log moving until it has had its turn.
        await client.send_input(w, "tick", busy_policy=BusyPolicy.ENQUEUE)
        return False

    await eventually(trimmed, interval=0.1, what="retention trimming the log")
    before = await client.get_runtime()
    assert before.oldest_seq > 1
    assert await expect_expired(client, 1) == before.oldest_seq
    sp.kill9()

    sp = await serve_process(data, config=config)
    client = sp.client()
    after = await client.get_runtime()
    assert after.limits.event_retention_events == RETENTION
    assert after.oldest_seq >= before.oldest_seq
    assert after.last_seq > before.last_seq  # the recovery diagnostic
    oldest = await expect_expired(client, 1)
    assert oldest == after.oldest_seq
    # ... while a cursor just before the oldest retained seq is still fine, and the log holds at
    # most the retention bound (plus what was committed since the last trim).
    logged = await all_events(client, oldest - 1)
    assert logged[0].seq == oldest
    assert [e.seq for e in logged] == list(range(oldest, oldest + len(logged)))
    assert len(logged) <= 2 * RETENTION
    # after_seq = 0 means "from the oldest retained": never expired
    assert (await client.list_events(after_seq=0)).events[0].seq == oldest
    assert sp.terminate() == 0
