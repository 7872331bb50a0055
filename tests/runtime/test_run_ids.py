"""Run and worker ids the Runtime mints are canonical UUIDv7 strings (RFC 9562): lower-case and
hyphenated exactly as ``str(uuid.UUID(...))`` spells them, version 7, the RFC variant, and
ordered by their millisecond timestamp — ids are formatted by hand (runtime._ids), so this pins
the spelling to the standard library's."""

from __future__ import annotations

import time
import uuid

from runtime_server.runtime import Runtime


def _check(value: str, before_ms: int, after_ms: int) -> int:
    parsed = uuid.UUID(value)
    assert str(parsed) == value  # the canonical spelling, nothing else
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    ms = parsed.int >> 80
    assert before_ms <= ms <= after_ms
    return ms


async def test_minted_ids_are_canonical_uuid7() -> None:
    async with Runtime() as runtime:
        before = time.time_ns() // 1_000_000
        created = await runtime.create_worker(profile="echo")
        worker_id = created.worker.worker_id
        stamps = [_check(worker_id, before, time.time_ns() // 1_000_000)]
        run_ids = set()
        for i in range(200):
            before = time.time_ns() // 1_000_000
            accepted = await runtime.send_input(worker_id, f"word {i}")
            run_ids.add(accepted.run.run_id)
            stamps.append(_check(accepted.run.run_id, before, time.time_ns() // 1_000_000))
            await runtime.wait_run(accepted.run.run_id)
        assert len(run_ids) == 200
        assert stamps == sorted(stamps)
