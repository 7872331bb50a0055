"""Scripted OpenAI-style SSE replies for workspace tests (served by LoopbackServer)."""

from __future__ import annotations

import json
from typing import Any

from serving import sse

from engine.testing import Reply


def tool_call_reply(*calls: tuple[str, str, dict[str, Any]]) -> Reply:
    """One assistant message asking for ``calls`` = ``(call_id, tool, arguments)``."""
    deltas = [
        {
            "index": i,
            "id": call_id,
            "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)},
        }
        for i, (call_id, name, args) in enumerate(calls)
    ]
    return Reply(
        body=sse(
            {"choices": [{"index": 0, "delta": {"tool_calls": deltas}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]},
            "[DONE]",
        )
    )


def text_reply(text: str) -> Reply:
    return Reply(
        body=sse(
            {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]},
            {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
            "[DONE]",
        )
    )


def provider_config(url: str, tools: list[str], extra: str = "") -> str:
    """A serve config with one profile ``files`` on the loopback provider at ``url``."""
    return (
        f'[providers.loop]\nkind = "openai_chat"\nbase_url = "{url}/v1"\nmax_retries = 0\n\n'
        f'[profiles.files]\nprovider = "loop"\nmodel = "scripted"\ntools = {json.dumps(tools)}\n'
        f"{extra}"
    )
