"""File tools inside a real ``serve`` process, driven by a scripted provider over real HTTP."""

from __future__ import annotations

import os
from pathlib import Path

from serving import ServeFactory, eventually
from ws_scripted import provider_config, text_reply, tool_call_reply

from engine.testing import LoopbackServer
from runtime_client import RunState, Workspace

BOUND = 30.0  # a safety net on a shared machine, never a speed assertion


async def test_fifo_read_is_an_error_result_and_sigterm_then_exits_cleanly(
    tmp_path: Path, serve_process: ServeFactory
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
