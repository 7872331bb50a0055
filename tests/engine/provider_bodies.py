"""Provider response bodies built in the providers' documented stream formats, for the engine
tests that replay them over a loopback HTTP server (engine.testing.LoopbackServer). The shapes
match the recorded streams in the shared fixtures; these build the cases no recording has."""

from __future__ import annotations

import json
from typing import Any


def sse(*payloads: Any, event: bool = False) -> bytes:
    """Server-sent events, one ``data:`` per payload (JSON unless already a string); with
    ``event``, each named by its payload's ``type`` (Anthropic's framing)."""
    out = b""
    for payload in payloads:
        data = payload if isinstance(payload, str) else json.dumps(payload)
        prefix = f"event: {payload['type']}\n" if event else ""
        out += f"{prefix}data: {data}\n\n".encode()
    return out


def delta(finish: str | None = None, **fields: Any) -> dict[str, Any]:
    """One Chat Completions stream chunk: ``fields`` as the delta."""
    return {"choices": [{"index": 0, "delta": fields, "finish_reason": finish}]}


def anthropic_text(text: str, stop: str = "end_turn", **delta_extra: Any) -> bytes:
    """A whole Anthropic Messages stream answering ``text`` (no text block delta when empty)."""
    return sse(
        {"type": "message_start", "message": {"usage": {"input_tokens": 9, "output_tokens": 1}}},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *([{"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": text}}] if text else []),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": stop, **delta_extra},
         "usage": {"output_tokens": 2}},
        {"type": "message_stop"},
        event=True,
    )  # fmt: skip
