"""The embedded Runtime has RuntimeClient's method set and shape (issue 8 item 10): the same names,
parameters and defaults where they overlap, every read ``async``, ``wait_run``; one piece of code
runs unchanged against an embedded Runtime and against a real server through the client; every
public method is documented; and the README's embedding snippet runs as written, as a file."""

from __future__ import annotations

import asyncio
import enum
import inspect
import re
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from runtime_client import RuntimeClient
from runtime_server import Runtime, errors
from runtime_server.runtime import parse_config

if TYPE_CHECKING:
    from serving import ServeFactory

REPO_ROOT = Path(__file__).resolve().parents[2]
BOUND = 30.0  # a safety net, never a speed assertion
READS = {
    "get_runtime", "list_diagnostics", "list_profiles", "get_worker", "list_workers",
    "iter_workers", "get_run", "wait_run", "get_transcript", "iter_transcript", "list_events",
    "get_usage", "subscribe",
}  # fmt: skip


def _public(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.isfunction(member)
    }


def _default(value: object) -> object:
    # the two vocabularies have their own enum classes (BusyPolicy): compare by member name
    return value.name if isinstance(value, enum.Enum) else value


def test_every_client_read_exists_on_the_runtime_with_the_same_shape() -> None:
    runtime, client = _public(Runtime), _public(RuntimeClient)
    assert set(client) >= READS
    assert set(runtime) >= READS, READS - set(runtime)
    # close() is lifecycle, not a call on a shared API: the client closes its channel, the
    # Runtime drains its runs (grace_s), and each keeps its own parameter
    for name in sorted(set(runtime) & set(client) - {"close"}):
        ours, theirs = runtime[name], client[name]
        # awaited, or iterated with async for, exactly like the client's
        if inspect.isasyncgenfunction(theirs) and name != "subscribe":
            assert inspect.isasyncgenfunction(ours), name
        elif inspect.iscoroutinefunction(theirs):
            assert inspect.iscoroutinefunction(ours), name
        ours_params = list(inspect.signature(ours).parameters.values())[1:]
        theirs_params = {p.name: p for p in list(inspect.signature(theirs).parameters.values())[1:]}
        for p in ours_params:  # every parameter the client has too: same kind, same default
            assert p.name in theirs_params, f"{name}({p.name}) is not a client parameter"
            q = theirs_params[p.name]
            assert p.kind == q.kind, f"{name}({p.name})"
            assert _default(p.default) == _default(q.default), f"{name}({p.name})"
        # and in the same order, so positional calls mean the same thing
        shared = [p.name for p in ours_params]
        assert shared == [n for n in theirs_params if n in shared], name


def test_every_public_runtime_method_has_a_docstring() -> None:
    undocumented = [
        name
        for name, member in inspect.getmembers(Runtime)
        if (not name.startswith("_") or name in ("__aenter__", "__aexit__"))
        and (inspect.isfunction(member) or isinstance(member, property))
        and not (member.__doc__ or "").strip()
    ]
    assert undocumented == []


async def _exercise(api: Any) -> dict[str, Any]:
    """Code written once, against whatever ``api`` is: an embedded Runtime or a RuntimeClient."""
    info = await api.get_runtime()
    worker = (await api.create_worker(profile="echo", labels={"team": "a"})).worker
    accepted = await api.send_input(worker.worker_id, "one two three")
    deltas: list[str] = []
    subscription = api.subscribe(worker.worker_id, after_seq=accepted.seq)
    async for event in subscription:
        if type(event.payload).__name__ == "TextDelta":
            deltas.append(event.payload.text)
        if type(event.payload).__name__ == "RunFinished":
            break
    if hasattr(subscription, "aclose"):  # the client's: an async generator
        await subscription.aclose()
    else:  # the Runtime's: a Subscription
        subscription.close()
    run = await api.wait_run(accepted.run.run_id, timeout=BOUND)
    listed = await api.list_workers(page_size=10, labels={"team": "a"})
    page = await api.get_transcript(worker.worker_id, page_size=1)
    events = await api.list_events(after_seq=accepted.seq, worker_id=worker.worker_id)
    stopped = await api.stop_worker(worker.worker_id, reason="done")
    return {
        "state": info.state.name,
        "deltas": deltas,
        "run": (run.state.name, run.usage.input_tokens, run.usage.output_tokens),
        "got": (await api.get_run(run.run_id)).state.name,
        "worker": (await api.get_worker(worker.worker_id)).state.name,
        "listed": [w.worker_id for w in listed.items] == [worker.worker_id],
        "iterated": [w.worker_id async for w in api.iter_workers(labels={"team": "a"})]
        == [worker.worker_id],
        "page": (len(page.items), bool(page.next_page_token)),
        "transcript": [
            (e.message.role.name, e.message.text)
            async for e in api.iter_transcript(worker.worker_id)
        ],
        "events": len(events.events) > 0,
        "usage": (await api.get_usage(worker.worker_id)).usage.total_tokens,
        "lifetime": (await api.get_usage()).lifetime_runs,
        "profiles": "echo" in [p.name for p in await api.list_profiles()],
        "diagnostics": len((await api.list_diagnostics(page_size=5)).items),
        "stopped": stopped.state.name,
    } | {"worker_id": len(worker.worker_id)}


async def test_one_piece_of_code_runs_against_both(serve: ServeFactory) -> None:
    async with Runtime() as rt:
        embedded = await _exercise(rt)
    remote = await _exercise((await serve()).client)
    assert embedded == remote
    assert embedded["run"] == ("COMPLETED", 3, 3)
    assert embedded["transcript"] == [("USER", "one two three"), ("ASSISTANT", "one two three")]
    assert "".join(embedded["deltas"]) == "one two three"


async def test_wait_run_waits_for_the_end_and_times_out() -> None:
    async with Runtime() as rt:
        worker = (await rt.create_worker()).worker
        done = await rt.send_input(worker.worker_id, "quick")
        assert (await rt.wait_run(done.run.run_id, timeout=BOUND)).state.name == "COMPLETED"
        # finished already: returned at once
        assert (await rt.wait_run(done.run.run_id)).state.name == "COMPLETED"
        with pytest.raises(errors.RunNotFound):
            await rt.wait_run("0190a0a0-0000-7000-8000-000000000000")


async def test_wait_run_returns_a_run_cancelled_meanwhile() -> None:
    config = parse_config(
        {"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 500}}}}
    )
    async with Runtime(config=config) as rt:
        worker = (await rt.create_worker(profile="slow")).worker
        accepted = await rt.send_input(worker.worker_id, " ".join(["word"] * 100))
        waiting = asyncio.ensure_future(rt.wait_run(accepted.run.run_id, timeout=BOUND))
        with pytest.raises(TimeoutError):
            await rt.wait_run(accepted.run.run_id, timeout=0.05)
        assert not waiting.done()
        await rt.cancel_run(accepted.run.run_id)
        assert (await waiting).state.name == "CANCELLED"


def test_the_readme_embedding_snippet_runs_as_written(tmp_path: Path) -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Embedding the Runtime in-process", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 1
    script = tmp_path / "embedding.py"
    script.write_text(blocks[0], encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "[COMPLETED]" in lines
    assert lines[-1].endswith(" tokens")
    assert int(lines[-1].split()[0]) > 0
