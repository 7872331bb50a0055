"""Profiles and providers from a TOML config file.

::

    [providers.openai]                 # a named provider
    kind = "openai_chat"               # echo | openai_chat | openai_responses | anthropic
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"     # the *name* of an env var; the key itself is never stored
    headers = { "OpenAI-Organization" = "org-1" }
    reasoning_field = "auto"           # openai_chat: auto | reasoning_content | reasoning | none

    [providers.local]                  # the bundled offline model (llama.cpp + SmolLM2-135M):
    kind = "openai_chat"               # started on 127.0.0.1 at first use, stopped at shutdown;
    local_model = "smollm2"            # it sets base_url (do not give one)

    [profiles.assistant]
    provider = "openai"
    model = "gpt-4o-mini"
    system_prompt = "You are terse."
    max_tokens = 512
    temperature = 0.2
    options = { seed = 7 }             # passed through to the provider request
    tools = ["clock"]                  # built-in tools this profile may call
    request_deadline_s = 600           # each model request ends by then, keep-alives or not
    context_max_tokens = 24000         # history sent per request, estimated tokens (0 = no bound)
    context_max_messages = 0           # ... and messages (0 = no bound); see engine._context
    context_compaction = "none"        # none (summarize: not implemented yet)
    # Profile-level preamble, for small models (see engine.TurnConfig): few-shot messages sent
    # before the worker's history in every request but never stored in its transcript, and the
    # opening of the answer on each run's first request, with options for that request only.
    examples = [
      { role = "user", text = "What time is it?" },
      { role = "assistant", tool_calls = [{ id = "ex1", name = "clock", arguments = {} }] },
      { role = "tool", tool_call_id = "ex1", text = "2025-01-01T09:30:00+00:00" },
      { role = "assistant", text = "It is 09:30 UTC." },
    ]
    prefill = "<tool_call>\n"
    prefill_options = { tool_choice = "required" }

A built-in provider ``builtin`` (kind ``echo``) and profile ``echo`` always exist. The transcript
holds exactly what the model saw apart from this preamble (system prompt, examples, prefill).
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import engine
from runtime_server.runtime._policy import HostPolicy, parse_policy

PROVIDER_KINDS = ("echo", "openai_chat", "anthropic", "openai_responses")
REASONING_FIELDS = ("auto", "reasoning_content", "reasoning", "none")
DEFAULT_REQUEST_DEADLINE_S = 600.0


class ConfigError(Exception):
    """The config file is invalid; the message names the file and the key."""


# The largest number a [providers.*] / [profiles.*] setting takes (seconds, counts): beyond
# it, inf or 1e300 seconds overflow asyncio's timers and a retry count is no bound at all.
MAX_CONFIG_NUMBER = 1e9
MAX_ECHO_DELAY_MS = 60_000
MAX_RETRIES = 100  # a provider's max_retries: retries stay a bound, not a loop
# The tools a profile may name (runtime_server.runtime._tools builds them).
BUILTIN_TOOLS = ("clock", "read_file", "list_files", "write_file", "edit_file")


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str = ""
    api_key_env: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 120.0
    max_retries: int = 3
    # A bundled model (engine.LOCAL_MODELS) the Runtime starts on first use; it sets base_url.
    local_model: str = ""
    # openai_chat: the field reasoning goes back in ("auto": the one the provider used).
    reasoning_field: str = "auto"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    provider: ProviderConfig
    model: str
    system_prompt: str = ""
    description: str = ""
    max_tokens: int | None = None
    temperature: float | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    tools: tuple[str, ...] = ()
    max_tool_rounds: int = 8
    tool_timeout_s: float = 30.0
    max_length_continuations: int = 0
    builtin: bool = False
    examples: tuple[engine.Message, ...] = ()
    prefill: str = ""
    prefill_options: Mapping[str, Any] = field(default_factory=dict)
    # Total time one model request may take, first byte to last (keep-alives do not extend it).
    request_deadline_s: float = DEFAULT_REQUEST_DEADLINE_S
    # How much of the history each request carries (the transcript itself stays whole).
    context: engine.ContextPolicy = field(default_factory=engine.ContextPolicy)


BUILTIN_PROVIDER = ProviderConfig(name="builtin", kind="echo")
ECHO_PROFILE = Profile(
    name="echo",
    provider=BUILTIN_PROVIDER,
    model="echo",
    description="Offline: streams the input back word by word.",
    builtin=True,
)


@dataclass(frozen=True, slots=True)
class Config:
    providers: Mapping[str, ProviderConfig]
    profiles: Mapping[str, Profile]
    limits: Mapping[str, Any] = field(default_factory=dict)
    # [workspaces] and [capabilities]: what this host grants (deny every workspace by default).
    policy: HostPolicy = field(default_factory=HostPolicy)


def default_config() -> Config:
    return Config({BUILTIN_PROVIDER.name: BUILTIN_PROVIDER}, {ECHO_PROFILE.name: ECHO_PROFILE})


def load_config(path: Path) -> Config:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, source=str(path))


def parse_config(data: Mapping[str, Any], *, source: str = "<config>") -> Config:
    def fail(key: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: {key}: {why}")

    sections = {"providers", "profiles", "limits", "workspaces", "capabilities"}
    unknown = set(data) - sections
    if unknown:
        raise fail(sorted(unknown)[0], f"unknown section (expected {', '.join(sorted(sections))})")

    providers: dict[str, ProviderConfig] = {BUILTIN_PROVIDER.name: BUILTIN_PROVIDER}
    for name, raw in _table(data, "providers", fail).items():
        key = f"providers.{name}"
        if name in providers:
            raise fail(key, "name is reserved")
        if not isinstance(raw, Mapping):
            raise fail(key, "must be a table")
        _only(
            raw,
            key,
            fail,
            {
                "kind", "base_url", "api_key_env", "headers", "timeout_s", "max_retries",
                "local_model", "reasoning_field",
            },
        )  # fmt: skip
        kind = _get(raw, "kind", str, key, fail, required=True)
        if kind not in PROVIDER_KINDS:
            raise fail(f"{key}.kind", f"must be one of {', '.join(PROVIDER_KINDS)}")
        local_model = _get(raw, "local_model", str, key, fail) or ""
        if "local_model" in raw:
            if local_model not in engine.LOCAL_MODELS:
                known = ", ".join(engine.LOCAL_MODELS)
                raise fail(f"{key}.local_model", f"unknown local model (known: {known})")
            if kind not in ("openai_chat", "anthropic"):
                raise fail(f"{key}.local_model", "needs kind openai_chat or anthropic")
            if "base_url" in raw:
                raise fail(f"{key}.base_url", "must not be set with local_model (it sets it)")
        reasoning_field = _get(raw, "reasoning_field", str, key, fail) or "auto"
        if reasoning_field not in REASONING_FIELDS:
            raise fail(f"{key}.reasoning_field", f"must be one of {', '.join(REASONING_FIELDS)}")
        if "reasoning_field" in raw and kind != "openai_chat":
            raise fail(f"{key}.reasoning_field", "applies to kind openai_chat only")
        headers = _get(raw, "headers", dict, key, fail) or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise fail(f"{key}.headers", "must map strings to strings")
        for header, value in headers.items():
            # A header may carry a credential: name the key, never show the value.
            if not all(" " <= c <= "~" for c in header + value) or value != value.strip():
                raise fail(
                    f"{key}.headers.{header!r}",
                    "control or non-ASCII characters, or surrounding whitespace, are not "
                    "allowed in an HTTP header (the value is not shown)",
                )
        providers[name] = ProviderConfig(
            name=name,
            kind=kind,
            base_url=_get(raw, "base_url", str, key, fail) or "",
            api_key_env=_get(raw, "api_key_env", str, key, fail) or "",
            headers=headers,
            timeout_s=_number(raw, "timeout_s", key, fail, default=120.0, minimum=0.001),
            max_retries=int(
                _number(raw, "max_retries", key, fail, default=3, maximum=MAX_RETRIES, integer=True)
            ),
            local_model=local_model,
            reasoning_field=reasoning_field,
        )

    profiles: dict[str, Profile] = {ECHO_PROFILE.name: ECHO_PROFILE}
    for name, raw in _table(data, "profiles", fail).items():
        key = f"profiles.{name}"
        if not isinstance(raw, Mapping):
            raise fail(key, "must be a table")
        _only(
            raw,
            key,
            fail,
            {
                "provider", "model", "system_prompt", "description", "max_tokens", "temperature",
                "options", "tools", "max_tool_rounds", "tool_timeout_s", "max_length_continuations",
                "examples", "prefill", "prefill_options", "request_deadline_s",
                "context_max_tokens", "context_max_messages", "context_compaction",
            },
        )  # fmt: skip
        provider_name = _get(raw, "provider", str, key, fail, required=True)
        provider = providers.get(provider_name)
        if provider is None:
            raise fail(f"{key}.provider", f"no provider named {provider_name!r}")
        tools = _get(raw, "tools", list, key, fail) or []
        if not all(isinstance(t, str) for t in tools):
            raise fail(f"{key}.tools", "must be a list of tool names")
        bad_tools = [t for t in tools if t not in BUILTIN_TOOLS]
        if bad_tools:  # before: silently left out, so a typo ("read_files") just lost the tool
            raise fail(
                f"{key}.tools",
                f"no built-in tool named {bad_tools[0]!r} (there are {', '.join(BUILTIN_TOOLS)})",
            )
        max_tokens = _get(raw, "max_tokens", int, key, fail)
        if max_tokens is not None and max_tokens < 1:
            raise fail(f"{key}.max_tokens", "must be >= 1")
        temperature = _get(raw, "temperature", (int, float), key, fail)
        if temperature is not None and not math.isfinite(temperature):
            raise fail(f"{key}.temperature", "must be a finite number")
        options = _get(raw, "options", dict, key, fail) or {}
        _finite_json(options, f"{key}.options", fail)
        if provider.kind == "echo":
            _echo_delay(options, key, fail)
        prefill_options = _get(raw, "prefill_options", dict, key, fail) or {}
        _finite_json(prefill_options, f"{key}.prefill_options", fail)
        default_model = "echo" if provider.kind == "echo" else provider.local_model
        profiles[name] = Profile(
            name=name,
            provider=provider,
            model=_get(raw, "model", str, key, fail) or default_model,
            system_prompt=_get(raw, "system_prompt", str, key, fail) or "",
            description=_get(raw, "description", str, key, fail) or "",
            max_tokens=max_tokens,
            temperature=None if temperature is None else float(temperature),
            options=options,
            tools=tuple(tools),
            max_tool_rounds=int(
                _number(raw, "max_tool_rounds", key, fail, default=8, integer=True)
            ),
            tool_timeout_s=_number(raw, "tool_timeout_s", key, fail, default=30.0, minimum=0.001),
            max_length_continuations=int(
                _number(raw, "max_length_continuations", key, fail, default=0, integer=True)
            ),
            examples=_examples(
                _get(raw, "examples", list, key, fail) or [], f"{key}.examples", fail
            ),
            prefill=_get(raw, "prefill", str, key, fail) or "",
            prefill_options=prefill_options,
            request_deadline_s=_number(
                raw,
                "request_deadline_s",
                key,
                fail,
                default=DEFAULT_REQUEST_DEADLINE_S,
                minimum=0.001,
            ),
            context=_context_policy(raw, key, fail),
        )
        if not profiles[name].model:
            raise fail(f"{key}.model", "is required")
    limits = dict(_table(data, "limits", fail))
    policy, policy_limits = parse_policy(
        _table(data, "workspaces", fail), _table(data, "capabilities", fail), fail
    )
    if "max_mounts" in limits and policy_limits:
        raise fail("workspaces.max_mounts", "also set as limits.max_mounts: set it once")
    limits.update(policy_limits)
    return Config(providers, profiles, limits, policy)


def _context_policy(raw: Mapping[str, Any], key: str, fail: Any) -> engine.ContextPolicy:
    compaction = _get(raw, "context_compaction", str, key, fail) or "none"
    if compaction == "summarize":
        raise fail(f"{key}.context_compaction", "summarize is not implemented yet (use none)")
    if compaction not in engine.COMPACTION_MODES:
        modes = ", ".join(engine.COMPACTION_MODES)
        raise fail(f"{key}.context_compaction", f"must be one of {modes}")
    return engine.ContextPolicy(
        max_tokens=int(
            _number(raw, "context_max_tokens", key, fail, default=engine.DEFAULT_MAX_TOKENS,
                    integer=True)
        ),
        max_messages=int(_number(raw, "context_max_messages", key, fail, default=0, integer=True)),
        compaction=compaction,
    )  # fmt: skip


def _examples(raw: list[Any], key: str, fail: Any) -> tuple[engine.Message, ...]:
    """Few-shot messages: ``{role, text}``; an assistant may add ``tool_calls = [{id, name,
    arguments}]`` (arguments a table or JSON text); a tool result gives ``tool_call_id`` (and may
    give ``is_error``). Every call must be answered, and the examples end with an assistant
    message, so the worker's history follows a complete round."""
    out: list[engine.Message] = []
    open_calls: dict[str, str] = {}  # call id -> tool name, awaiting a result
    for i, item in enumerate(raw):
        at = f"{key}[{i}]"
        if not isinstance(item, Mapping):
            raise fail(at, "must be a table")
        _only(item, at, fail, {"role", "text", "tool_calls", "tool_call_id", "is_error"})
        role = _get(item, "role", str, at, fail, required=True)
        text = _get(item, "text", str, at, fail) or ""
        if role == "tool":
            call_id = _get(item, "tool_call_id", str, at, fail, required=True)
            if call_id not in open_calls:
                raise fail(f"{at}.tool_call_id", "answers no open tool call of the examples")
            is_error = bool(_get(item, "is_error", bool, at, fail))
            out.append(
                engine.Message(
                    engine.Role.TOOL,
                    text,
                    tool_call_id=call_id,
                    tool_name=open_calls.pop(call_id),
                    is_error=is_error,
                )
            )
            continue
        if open_calls:
            raise fail(at, f"tool call {next(iter(open_calls))!r} has no result before this")
        if role not in ("user", "assistant"):
            raise fail(f"{at}.role", "must be user, assistant or tool")
        for extra in ("tool_call_id", "is_error") + (("tool_calls",) if role == "user" else ()):
            if extra in item:
                raise fail(f"{at}.{extra}", f"not allowed on a {role} message")
        calls = tuple(
            _tool_call(call, f"{at}.tool_calls[{j}]", fail)
            for j, call in enumerate(_get(item, "tool_calls", list, at, fail) or [])
        )
        if not text and not calls:
            raise fail(at, "needs text or tool_calls")
        open_calls = {call.call_id: call.name for call in calls}
        if len(open_calls) != len(calls):
            raise fail(f"{at}.tool_calls", "ids must be unique")
        out.append(engine.Message(engine.Role(role), text, tool_calls=calls))
    if open_calls:
        raise fail(key, f"tool call {next(iter(open_calls))!r} has no result")
    if out and out[-1].role is not engine.Role.ASSISTANT:
        raise fail(key, "must end with an assistant message")
    return tuple(out)


def _tool_call(raw: Any, at: str, fail: Any) -> engine.ToolCall:
    if not isinstance(raw, Mapping):
        raise fail(at, "must be a table")
    _only(raw, at, fail, {"id", "name", "arguments"})
    arguments = raw.get("arguments", {})
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            raise fail(f"{at}.arguments", "is not valid JSON") from None
    if not isinstance(arguments, Mapping):
        raise fail(f"{at}.arguments", "must be a table (or a JSON object as text)")
    return engine.ToolCall(
        _get(raw, "id", str, at, fail, required=True),
        _get(raw, "name", str, at, fail, required=True),
        json.dumps(arguments),
    )


def _table(data: Mapping[str, Any], key: str, fail: Any) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise fail(key, "must be a table")
    return value


def _only(raw: Mapping[str, Any], key: str, fail: Any, allowed: set[str]) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise fail(f"{key}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


def _number(
    raw: Mapping[str, Any],
    name: str,
    key: str,
    fail: Any,
    *,
    default: float,
    minimum: float = 0,
    maximum: float = MAX_CONFIG_NUMBER,
    integer: bool = False,
) -> float:
    """A number that may legitimately be 0 (so never ``value or default``), checked for range."""
    value = _get(raw, name, int if integer else (int, float), key, fail)
    if value is None:
        return default
    if not value >= minimum:  # NaN too
        raise fail(f"{key}.{name}", f"must be >= {minimum:g}")
    if not math.isfinite(value) or value > maximum:
        raise fail(f"{key}.{name}", f"must be at most {maximum:g}")
    return float(value)


def _finite_json(value: Any, path: str, fail: Any) -> None:
    """Request-body values (``options``, ``prefill_options``) are sent as JSON, which has no NaN
    or infinity: before, such a value failed every run of the profile with INTERNAL."""
    if isinstance(value, float) and not math.isfinite(value):
        raise fail(path, "must be a finite number (JSON has no NaN or infinity)")
    if isinstance(value, Mapping):
        for k, v in value.items():
            _finite_json(v, f"{path}.{k}", fail)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _finite_json(v, f"{path}[{i}]", fail)


def _echo_delay(options: Mapping[str, Any], key: str, fail: Any) -> None:
    """The builtin echo's ``options.delay_ms``: a number of milliseconds, 0 to a minute. Before,
    ``"x"`` or NaN failed every run with INTERNAL and 1e300 made runs that never ended."""
    if "delay_ms" not in options:
        return
    delay = options["delay_ms"]
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise fail(f"{key}.options.delay_ms", "must be a number of milliseconds")
    if not 0 <= delay <= MAX_ECHO_DELAY_MS:
        raise fail(f"{key}.options.delay_ms", f"must be from 0 to {MAX_ECHO_DELAY_MS}")


def _get(
    raw: Mapping[str, Any],
    name: str,
    types: type | tuple[type, ...],
    key: str,
    fail: Any,
    *,
    required: bool = False,
) -> Any:
    if name not in raw:
        if required:
            raise fail(f"{key}.{name}", "is required")
        return None
    value = raw[name]
    if isinstance(value, bool) and bool not in (types if isinstance(types, tuple) else (types,)):
        raise fail(f"{key}.{name}", "has the wrong type")
    if not isinstance(value, types):
        raise fail(f"{key}.{name}", "has the wrong type")
    return value
