"""A run's engine settings (``TurnConfig``) come from its own worker's profile. They are built
once per profile object and reused run after run (runtime._turns): with several profiles in
turn — alike but for one setting — and a bundle's profile of the same name, each run must still
get exactly its own profile's settings, never another's."""

from __future__ import annotations

import asyncio

from runtime_server.model import RunFinished, TextDelta
from runtime_server.runtime import Runtime, parse_config

TEXT = "one two three four five six seven eight"


def _config() -> dict[str, object]:
    return {
        "profiles": {
            "two": {"provider": "builtin", "model": "echo", "max_tokens": 2},
            "five": {"provider": "builtin", "model": "echo", "max_tokens": 5},
            "all": {"provider": "builtin", "model": "echo"},
        }
    }


async def _words(runtime: Runtime, worker_id: str) -> tuple[int, str]:
    """Send TEXT; the run's delta count and its stop reason."""
    accepted = await runtime.send_input(worker_id, TEXT)
    sub = runtime.subscribe(after_seq=accepted.seq - 1, worker_id=worker_id)
    deltas = 0
    try:
        async with asyncio.timeout(30):
            async for event in sub:
                if isinstance(event.payload, TextDelta):
                    deltas += 1
                elif isinstance(event.payload, RunFinished):
                    return deltas, event.payload.run.stop_reason
    finally:
        sub.close()
    raise AssertionError("no RunFinished")


async def test_each_run_gets_its_own_profiles_settings() -> None:
    async with Runtime(config=parse_config(_config())) as runtime:
        workers = {}
        for name in ("two", "five", "all"):
            workers[name] = (await runtime.create_worker(profile=name)).worker.worker_id
        expected = {"two": (2, "length"), "five": (5, "length"), "all": (8, "end_turn")}
        for _ in range(3):  # in turn, so a settings object reused for the wrong profile shows
            for name, worker_id in workers.items():
                assert await _words(runtime, worker_id) == expected[name], name


async def test_a_new_runtime_with_other_settings_under_the_same_names() -> None:
    # Another Runtime (as after a restart with an edited config): same profile names, other
    # values, new profile objects — the settings cached for the old ones must not be used.
    swapped = _config()
    profiles = swapped["profiles"]
    assert isinstance(profiles, dict)
    profiles["two"], profiles["five"] = profiles["five"], profiles["two"]
    for config, expected in ((_config(), 2), (swapped, 5), (_config(), 2)):
        async with Runtime(config=parse_config(config)) as runtime:
            worker_id = (await runtime.create_worker(profile="two")).worker.worker_id
            assert (await _words(runtime, worker_id))[0] == expected
