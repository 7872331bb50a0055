"""Fixtures of the live tests: the Runtime on a real model (llama.cpp + SmolLM2-135M) through the
gRPC API with the real client.

- ``llama`` (root conftest): ONE llama.cpp server for the whole session (starting it takes 1-3 s).
- ``live_config``: the shipped ``config/serve.toml`` with its ``local`` provider pointed at that
  server (so the ``smollm2`` / ``smollm2-chat`` profiles under test are the ones ``make serve``
  offers), plus a ``ramble`` profile for long, cancellable runs.
- ``serve`` (root conftest): a Runtime behind a real grpc.aio server on 127.0.0.1 port 0, and a
  RuntimeClient: ``await serve(config=live_config)``.

Without xllamacpp or the model the live tests skip locally and fail when ``CI`` is set.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from engine.testing import LlamaServer

ROOT = Path(__file__).resolve().parents[2]
SERVE_TOML = ROOT / "config" / "serve.toml"


@pytest.fixture
def live_config(llama: LlamaServer) -> dict[str, Any]:
    data = tomllib.loads(SERVE_TOML.read_text(encoding="utf-8"))
    local = data["providers"]["local"]
    del local["local_model"]  # the session server instead of one started per Runtime
    local["base_url"] = llama.openai_base_url
    for profile in data["profiles"].values():
        if profile["provider"] == "local":
            profile.setdefault("model", llama.model_name)  # local_model gave the default
    data["profiles"]["ramble"] = {
        # Long answers ("Write a long story..." runs to the limit at temperature 0), to cancel
        # mid-stream; max_tokens beyond LOCAL_LLM's 64 on purpose: the cancel is what bounds it.
        "provider": "local",
        "model": llama.model_name,
        "max_tokens": 1024,
        "temperature": 0,
        "options": {"seed": 42},
        "max_tool_rounds": 1,
    }
    return data
