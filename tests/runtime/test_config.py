"""Config parsing (``parse_config`` / ``load_config``): the shipped ``config/serve.toml``, a
provider's ``local_model`` key, a profile's few-shot ``examples`` — each mistake a ConfigError
naming the key."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime_server.runtime import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]
SERVE_TOML = ROOT / "config" / "serve.toml"


def test_shipped_config_offers_the_local_model() -> None:
    config = load_config(SERVE_TOML)
    local = config.providers["local"]
    assert (local.kind, local.local_model, local.base_url) == ("openai_chat", "smollm2", "")
    for name in ("smollm2", "smollm2-chat"):
        profile = config.profiles[name]
        assert profile.provider is local
        assert profile.model == "smollm2"  # defaults to the local model's name
        assert profile.temperature == 0
        assert profile.max_tokens is not None
        assert profile.max_tokens <= 64
        assert "seed" in profile.options
    tools = config.profiles["smollm2"]
    assert tools.tools == ("clock",)
    assert tools.prefill == "<tool_call>\n"
    assert tools.prefill_options == {"tool_choice": "required"}
    assert [m.role.value for m in tools.examples] == ["user", "assistant", "tool", "assistant"]
    assert tools.examples[2].tool_name == "clock"  # taken from the call it answers


@pytest.mark.parametrize(
    ("provider", "error"),
    [
        ({"kind": "openai_chat", "local_model": "llama-70b"}, r"local_model: unknown local model"),
        ({"kind": "openai_chat", "local_model": ""}, r"local_model: unknown local model"),
        ({"kind": "echo", "local_model": "smollm2"}, r"local_model: needs kind openai_chat"),
        (
            {"kind": "anthropic", "local_model": "smollm2", "base_url": "http://127.0.0.1:1"},
            r"providers\.p\.base_url: must not be set with local_model",
        ),
        ({"kind": "openai_chat", "local_model": 1}, r"local_model: has the wrong type"),
    ],
)
def test_local_model_key_is_validated(provider: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config({"providers": {"p": provider}})


CALL = {"role": "assistant", "tool_calls": [{"id": "c1", "name": "clock", "arguments": {}}]}
RESULT = {"role": "tool", "tool_call_id": "c1", "text": "09:30"}
ANSWER = {"role": "assistant", "text": "It is 09:30."}
QUESTION = {"role": "user", "text": "What time is it?"}
BAD_JSON_CALL = {"role": "assistant", "tool_calls": [{"id": "c", "name": "n", "arguments": "[1"}]}


@pytest.mark.parametrize(
    ("examples", "error"),
    [
        ([QUESTION], r"examples: must end with an assistant message"),
        ([QUESTION, CALL, ANSWER], r"examples\[2\]: tool call 'c1' has no result before this"),
        ([QUESTION, CALL], r"examples: tool call 'c1' has no result"),
        ([QUESTION, RESULT, ANSWER], r"examples\[1\]\.tool_call_id: answers no open tool call"),
        ([{"role": "system", "text": "x"}, ANSWER], r"examples\[0\]\.role: must be user"),
        ([{"role": "user"}, ANSWER], r"examples\[0\]: needs text or tool_calls"),
        ([{"role": "user", "text": "q", "tool_calls": []}, ANSWER], r"tool_calls: not allowed"),
        ([QUESTION, BAD_JSON_CALL], r"tool_calls\[0\]\.arguments: is not valid JSON"),
        (["hello"], r"examples\[0\]: must be a table"),
    ],
)  # fmt: skip
def test_examples_are_validated(examples: list[Any], error: str) -> None:
    with pytest.raises(ConfigError, match=error):
        parse_config({"profiles": {"p": {"provider": "builtin", "examples": examples}}})


def test_arguments_may_be_json_text() -> None:
    call = {"role": "assistant", "tool_calls": [{"id": "c1", "name": "clock", "arguments": "{}"}]}
    config = parse_config(
        {"profiles": {"p": {"provider": "builtin", "examples": [QUESTION, call, RESULT, ANSWER]}}}
    )
    assert config.profiles["p"].examples[1].tool_calls[0].arguments == "{}"
