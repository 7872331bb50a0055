"""What a tool returns is valid Unicode, so a run that lists a workspace holding an odd file name
completes.

File names are bytes: ``os.scandir`` decodes a name that is not UTF-8 (``b"caf\\xe9.txt"``, from an
old Latin-1 archive) with ``surrogateescape`` into a ``str`` holding a lone surrogate, and a path
the model sends as a JSON ``"\\udcff"`` escape becomes one too (echoed in ``write_file``'s
answer). Such a tool result went into the transcript as it was, and the next model request's
JSON body could not be encoded: the run FAILED with an internal error, on every path, so one such
file in a workspace broke every run that listed it (and an embedded caller, e.g. the Backend's
console, got the raw surrogate: a 500 for the transcript). Now the engine makes every tool result
valid Unicode (U+FFFD) before it is emitted and committed. A real scripted provider over loopback
HTTP drives the tools of an embedded Runtime on a real SQLite file."""

from __future__ import annotations

import os
from pathlib import Path

from ws_scripted import text_reply, tool_call_reply

from engine.testing import LoopbackServer
from runtime_client import MountMode, RunState, ToolCallFinished, Workspace
from runtime_server.embedded import EmbeddedRuntime
from runtime_server.runtime import HostPolicy, parse_config
from runtime_server.store import SqliteStore

BOUND = 30.0


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


async def test_file_names_that_are_not_utf8_come_back_as_valid_text(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "plain.txt").write_text("x")
    (root / os.fsdecode(b"caf\xe9.txt")).write_bytes(b"latin-1 name")  # not a UTF-8 name
    replies = [
        tool_call_reply(("c1", "list_files", {"path": "."})),
        tool_call_reply(("c2", "write_file", {"path": "new\udcff.txt", "content": "hi"})),
        text_reply("done"),
    ]
    async with LoopbackServer(replies) as provider:
        config = parse_config(
            {
                "providers": {
                    "loop": {"kind": "openai_chat", "base_url": provider.url + "/v1",
                             "max_retries": 0},
                },
                "profiles": {
                    "files": {"provider": "loop", "model": "m",
                              "tools": ["list_files", "write_file"]},
                },
            }
        )  # fmt: skip
        policy = HostPolicy(allowed_roots=(str(root),))
        (tmp_path / "data").mkdir()
        store = SqliteStore(tmp_path / "data" / "runtime.sqlite3")
        async with await EmbeddedRuntime.open(config, store=store, policy=policy) as rt:
            ws = Workspace(str(root), root_mode=MountMode.READ_WRITE)
            worker = (await rt.create_worker(profile="files", workspace=ws)).worker
            accepted = await rt.send_input(worker.worker_id, "list and write")
            run = await rt.wait_run(accepted.run.run_id, timeout=BOUND)
            assert run.state is RunState.COMPLETED

            events = (await rt.list_events(after_seq=accepted.seq)).events
            results = [e.payload.result for e in events if isinstance(e.payload, ToolCallFinished)]
            transcript = [e.message.text for e in (await rt.get_transcript(worker.worker_id)).items]

    assert len(results) == 2
    assert "caf\ufffd.txt" in results[0].splitlines()
    assert "plain.txt" in results[0].splitlines()
    assert "new\ufffd.txt" in results[1]
    assert all(_encodable(text) for text in [*results, *transcript])
