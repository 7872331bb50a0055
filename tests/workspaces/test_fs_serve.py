"""File tools inside a real ``serve`` process, driven by a scripted provider over real HTTP."""

from __future__ import annotations

import os
from pathlib import Path

from serving import ServeProcessFactory, eventually
from ws_scripted import provider_config, text_reply, tool_call_reply

from engine.testing import LoopbackServer
from runtime_client import MountMode, RunState, Workspace

BOUND = 30.0  # a safety net on a shared machine, never a speed assertion


async def test_fifo_read_is_an_error_result_and_sigterm_then_exits_cleanly(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    os.mkfifo(root / "fifo")
    replies = [
        tool_call_reply(("c1", "read_file", {"path": "fifo"})),
        tool_call_reply(("c2", "list_files", {"path": "fifo"})),
        text_reply("could not read it"),
    ]
    async with LoopbackServer(replies) as provider:
        config = tmp_path / "serve.toml"
        allowed = f'\n[workspaces]\nallowed_roots = ["{tmp_path}"]\n'
        config.write_text(provider_config(provider.url, ["read_file", "list_files"], allowed))
        sp = await serve_process(tmp_path / "data", config=config)
        client = sp.client()
        w = (await client.create_worker(profile="files", workspace=Workspace(str(root)))).worker
        accepted = await client.send_input(w.worker_id, "read the fifo")
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)

        assert run.state is RunState.COMPLETED  # a refused file is a tool result, not a failure
        results = [e.message for e in (await client.get_transcript(w.worker_id)).items]
        tool_results = [m for m in results if m.tool_call_id]
        assert [(m.tool_name, m.is_error) for m in tool_results] == [
            ("read_file", True),
            ("list_files", True),
        ]
        assert "not a regular file" in tool_results[0].text
        assert str(root) not in tool_results[0].text

        # no thread is stuck on the FIFO: SIGTERM ends the process promptly and cleanly
        assert sp.terminate(timeout=BOUND) == 0
        await eventually(lambda: sp.proc.poll() is not None, what="serve exited")
        assert "Traceback" not in sp.stderr()


async def test_a_run_reads_and_edits_files_through_the_tools(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    root = tmp_path / "project"
    (root / ".git").mkdir(parents=True)
    (root / ".git" / "config").write_text("[core]\n")
    (root / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    replies = [
        tool_call_reply(("c1", "read_file", {"path": "notes.txt", "offset": 2, "limit": 1})),
        tool_call_reply(
            ("c2", "edit_file", {"path": "notes.txt", "old": "beta", "new": "BETA"}),
            ("c3", "write_file", {"path": "sub-less.txt", "content": "new file\n"}),
            ("c4", "write_file", {"path": ".git/config", "content": "pwned"}),
            ("c5", "edit_file", {"path": "notes.txt", "old": "a", "new": "b"}),
        ),
        tool_call_reply(("c6", "list_files", {"path": "."})),
        text_reply("edited"),
    ]
    async with LoopbackServer(replies) as provider:
        config = tmp_path / "serve.toml"
        tools = ["read_file", "list_files", "write_file", "edit_file", "clock"]
        allowed = f'\n[workspaces]\nallowed_roots = ["{tmp_path}"]\n'
        config.write_text(provider_config(provider.url, tools, allowed))
        sp = await serve_process(tmp_path / "data", config=config)
        client = sp.client()
        ws = Workspace(str(root), root_mode=MountMode.READ_WRITE)
        w = (
            await client.create_worker(
                profile="files", workspace=ws, capabilities=["fs.read", "fs.write"]
            )
        ).worker
        assert w.tools == ("read_file", "list_files", "write_file", "edit_file")
        accepted = await client.send_input(w.worker_id, "fix the notes")
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)

        assert run.state is RunState.COMPLETED
        results = {
            e.message.tool_call_id: (e.message.is_error, e.message.text)
            for e in (await client.get_transcript(w.worker_id)).items
            if e.message.tool_call_id
        }
        assert results["c1"] == (False, "beta\n[more: continue with offset=3]")
        assert results["c2"] == (False, "edited notes.txt")
        assert results["c3"] == (False, "created sub-less.txt (9 bytes)")
        assert results["c4"][0]
        assert "protected" in results["c4"][1]
        assert results["c5"][0]
        assert "must be unique" in results["c5"][1]
        assert results["c6"] == (False, ".git/\nnotes.txt\nsub-less.txt")
        assert (root / "notes.txt").read_text() == "alpha\nBETA\ngamma\n"
        assert (root / "sub-less.txt").read_text() == "new file\n"
        assert (root / ".git" / "config").read_text() == "[core]\n"
        # the model was offered exactly the worker's tools, and saw the tool results
        offered = [t["function"]["name"] for t in provider.requests[0].json()["tools"]]
        assert offered == list(w.tools)
        second = provider.requests[1].json()["messages"]
        assert any(m.get("role") == "tool" and "beta" in str(m.get("content")) for m in second)
        assert sp.terminate(timeout=BOUND) == 0
