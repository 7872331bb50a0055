"""Usage normalisation: each wire format's token counts mapped onto one :class:`Usage`.

Normalised meaning (documented on :class:`Usage`): ``input_tokens`` is the whole prompt, cached
parts included; ``cache_read_tokens``/``cache_write_tokens`` are the parts of it read from or
written to a prompt cache; ``output_tokens`` is everything generated, reasoning included;
``reasoning_tokens`` is the reasoning part of it, when the provider says.

- OpenAI Chat Completions (OpenAI, DeepSeek, Groq, OpenRouter, llama.cpp, vLLM): ``prompt_tokens``
  already includes ``prompt_tokens_details.cached_tokens``, and ``completion_tokens`` includes
  ``completion_tokens_details.reasoning_tokens``.
- DeepSeek reports the cached part of the prompt as ``prompt_cache_hit_tokens`` (inside
  ``prompt_tokens``, like OpenAI's ``cached_tokens``).
- xAI (and Gemini's OpenAI-compatible endpoint) count reasoning *outside* ``completion_tokens``:
  a real xAI stream says 26 completion + 227 reasoning, total 560 (307 prompt). Recognised from the
  figures themselves — ``prompt + completion + reasoning == total_tokens``, or fewer completion than
  reasoning tokens (impossible when completion includes reasoning) — and normalised by adding the
  reasoning to the output, so ``input + output`` equals the provider's own total.
- OpenAI Responses: ``input_tokens`` includes ``input_tokens_details.cached_tokens``,
  ``output_tokens`` includes ``output_tokens_details.reasoning_tokens``.
- Anthropic: ``input_tokens`` excludes the cache, so the prompt is ``input_tokens +
  cache_read_input_tokens + cache_creation_input_tokens``; no separate reasoning count.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine._types import Usage


def _int(value: Any) -> int:
    # bool is an int subclass; a count is never a bool
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _sub(mapping: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = mapping.get(key)
    return value if isinstance(value, Mapping) else {}


def usage_from_openai(raw: Mapping[str, Any]) -> Usage:
    prompt = _int(raw.get("prompt_tokens"))
    completion = _int(raw.get("completion_tokens"))
    reasoning = _int(_sub(raw, "completion_tokens_details").get("reasoning_tokens"))
    if reasoning and (
        completion < reasoning or prompt + completion + reasoning == _int(raw.get("total_tokens"))
    ):
        completion += reasoning  # xAI's convention: completion_tokens excludes reasoning
    cached = _int(_sub(raw, "prompt_tokens_details").get("cached_tokens"))
    return Usage(
        input_tokens=prompt,
        output_tokens=completion,
        # DeepSeek names the cached part of the prompt prompt_cache_hit_tokens
        cache_read_tokens=cached or _int(raw.get("prompt_cache_hit_tokens")),
        reasoning_tokens=reasoning,
    )


def usage_from_responses(raw: Mapping[str, Any]) -> Usage:
    """OpenAI Responses ``usage`` (see the module docstring)."""
    return Usage(
        input_tokens=_int(raw.get("input_tokens")),
        output_tokens=_int(raw.get("output_tokens")),
        cache_read_tokens=_int(_sub(raw, "input_tokens_details").get("cached_tokens")),
        cache_write_tokens=_int(_sub(raw, "input_tokens_details").get("cache_write_tokens")),
        reasoning_tokens=_int(_sub(raw, "output_tokens_details").get("reasoning_tokens")),
    )


class AnthropicUsage:
    """Anthropic reports usage twice: ``message_start`` (input, cache, first output count) and
    ``message_delta`` (cumulative output; newer servers repeat the input fields). Later values
    of a field replace earlier ones."""

    _FIELDS = (
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    )

    def __init__(self) -> None:
        self._raw: dict[str, int] = {}

    def update(self, raw: Mapping[str, Any]) -> Usage:
        for name in self._FIELDS:
            value = raw.get(name)
            if isinstance(value, int) and not isinstance(value, bool):
                self._raw[name] = value
        return self.usage

    @property
    def usage(self) -> Usage:
        cache_read = _int(self._raw.get("cache_read_input_tokens"))
        cache_write = _int(self._raw.get("cache_creation_input_tokens"))
        return Usage(
            input_tokens=_int(self._raw.get("input_tokens")) + cache_read + cache_write,
            output_tokens=_int(self._raw.get("output_tokens")),
            cache_read_tokens=cache_read,
            cache_write_tokens=cache_write,
        )
