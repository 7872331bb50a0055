"""The ``worker-runtime`` console script in real subprocesses: the client commands against a real
server, and ``serve`` itself shutting down cleanly on SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from console_script import BOUND, cli, needs_console_script

from runtime_client import RunFinished, RunState, RuntimeClient, RuntimeDraining, TextDelta

if TYPE_CHECKING:
    from serving import Served, SpawnServer

UNKNOWN = "0190a0a0-0000-7000-8000-000000000000"

pytestmark = needs_console_script


async def test_workers_create_and_list(served: Served) -> None:
    rc, out, err = await cli(
        served.target, "workers", "create", "--name", "cli-w", "--label", "k=v"
    )
    assert rc == 0, err
    worker_id = out.strip()
    assert len(out.splitlines()) == 1  # the id alone, for W=$(worker-runtime workers create)
    worker = await served.client.get_worker(worker_id)
    assert worker.display_name == "cli-w"
    assert dict(worker.labels) == {"k": "v"}

    rc, out, err = await cli(served.target, "workers", "list")
    assert rc == 0, err
    assert worker_id in out
    rc, out, err = await cli(served.target, "--json", "workers", "list", "--label", "k=v")
    assert rc == 0, err
    assert [w["worker_id"] for w in json.loads(out)] == [worker_id]


async def test_send_follow_prints_the_answer_then_events_and_transcript(served: Served) -> None:
    worker_id = (await served.client.create_worker()).worker.worker_id
    rc, out, err = await cli(served.target, "send", worker_id, "hello from the cli", "--follow")
    assert rc == 0, err
    assert out == "hello from the cli\n"
    assert "COMPLETED" in err

    rc, out, err = await cli(served.target, "events", "--worker", worker_id)
    assert rc == 0, err
    lines = out.splitlines()
    logged = (await served.client.list_events(worker_id=worker_id)).events
    assert len(lines) == len(logged)
    assert "hello" in out
    rc, out, err = await cli(served.target, "--json", "events", "--worker", worker_id)
    assert rc == 0, err
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["seq"] for e in events] == [e.seq for e in logged]
    assert {e["worker_id"] for e in events} == {worker_id}
    assert events[-1]["kind"] in ("run_finished", "worker_state_changed")
    assert any(e["kind"] == "run_finished" for e in events)

    rc, out, err = await cli(served.target, "transcript", worker_id)
    assert rc == 0, err
    assert out.count("hello from the cli") == 2


async def test_runtime_summary(served: Served) -> None:
    rc, out, err = await cli(served.target, "runtime")
    assert rc == 0, err
    assert served.runtime.runtime_id in out
    rc, out, err = await cli(served.target, "--json", "runtime")
    assert rc == 0, err
    assert json.loads(out)["runtime_id"] == served.runtime.runtime_id


async def test_errors_exit_non_zero_with_the_reason(served: Served) -> None:
    rc, out, err = await cli(served.target, "workers", "get", UNKNOWN)
    assert rc == 1
    assert out == ""
    assert err.startswith("error: WORKER_NOT_FOUND")
    rc, _, err = await cli(served.target, "send", UNKNOWN, "hi")
    assert rc == 1
    assert "error: WORKER_NOT_FOUND" in err


async def test_serve_stops_cleanly_on_sigterm_interrupting_the_active_run(
    spawn_server: SpawnServer, tmp_path: Path
) -> None:
    config = tmp_path / "runtime.toml"
    config.write_text('[profiles.slow]\nprovider = "builtin"\noptions = { delay_ms = 200 }\n')
    server = await spawn_server("--config", str(config), "--grace", "0.3")
    async with RuntimeClient(server.target) as client:
        worker_id = (await client.create_worker(profile="slow")).worker.worker_id
        accepted = await client.send_input(worker_id, " ".join(f"w{i}" for i in range(500)))
        stream = client.subscribe(worker_id, after_seq=accepted.seq, resume=False)
        finished: list[RunFinished] = []
        async with contextlib.aclosing(stream):
            async with asyncio.timeout(BOUND):
                async for ev in stream:  # the run is under way
                    if isinstance(ev.payload, TextDelta):
                        break
            server.proc.send_signal(signal.SIGTERM)

            async def rest() -> None:
                async with asyncio.timeout(BOUND):
                    async for ev in stream:
                        if isinstance(ev.payload, RunFinished):
                            finished.append(ev.payload)

            # after the interruption is delivered, the stream says the runtime is going away
            with pytest.raises(RuntimeDraining):
                await rest()
    assert [f.run.state for f in finished] == [RunState.INTERRUPTED]
    assert await server.terminate(timeout=BOUND) == 0
    out = server.stdout()
    assert "shutting down: draining" in out
    assert out.rstrip().endswith("stopped")


ESCAPES = "\x1b]52;c;ZXZpbA==\x07 \x1b[2J\r\x9b31m"  # clipboard write, clear screen, CR, C1 CSI


async def test_control_characters_from_the_server_never_reach_the_terminal(
    served: Served,
) -> None:
    # The echo model answers with the input: a model (or a prompt injection steering it) can emit
    # terminal commands, and a display name can carry them. Human output shows them escaped;
    # --json keeps the exact text for programs.
    created = await served.client.create_worker(display_name="name" + ESCAPES)
    worker_id = created.worker.worker_id
    rc, out, err = await cli(served.target, "send", worker_id, "say" + ESCAPES, "--follow")
    assert rc == 0, err
    rc2, shown, err2 = await cli(served.target, "workers", "get", worker_id)
    assert rc2 == 0, err2
    rc3, listed, err3 = await cli(served.target, "events", "--worker", worker_id)
    assert rc3 == 0, err3
    for text in (out, err, shown, listed):
        assert not {"\x1b", "\x07", "\r", "\x9b"} & set(text), repr(text)
    assert "say\\x1b]52;c;ZXZpbA==\\x07 \\x1b[2J\\r\\x9b31m" in out
    assert "name\\x1b]52" in shown

    rc, raw, err = await cli(served.target, "--json", "workers", "get", worker_id)
    assert rc == 0, err
    assert json.loads(raw)["display_name"] == "name" + ESCAPES


@pytest.mark.parametrize(
    "args",
    [
        ("events", "--after", "-5"),
        ("events", "--after", str(2**64)),
        ("events", "--limit", "-1"),
        ("diagnostics", "--limit", "-3"),
        ("events", "--after", "ten"),
    ],
)
async def test_out_of_range_numbers_are_usage_errors(served: Served, args: tuple[str, ...]) -> None:
    # before: --after -5 ended in protobuf's "Value out of range" traceback (exit 1), and
    # --limit -1 printed nothing and exited 0
    rc, out, err = await cli(served.target, *args)
    assert rc == 2, (rc, out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    assert args[1] in err


async def test_a_huge_diagnostics_limit_lists_what_there_is(served: Served) -> None:
    # before: a page size past the request's 32-bit field ended in a traceback
    rc, out, err = await cli(served.target, "--json", "diagnostics", "--limit", str(10**14))
    assert rc == 0, err
    assert isinstance(json.loads(out), list)


async def test_a_token_variable_named_but_unset_is_a_usage_error(served: Served) -> None:
    # before: the calls went out without a token, and the typo read as the server refusing it
    rc, out, err = await cli(served.target, "--token-env", "WR_SURELY_UNSET_TOKEN", "runtime")
    assert (rc, out) == (2, ""), (rc, out, err)
    assert err.strip() == "error: --token-env WR_SURELY_UNSET_TOKEN: the variable is not set"
