"""Profiles and providers from a TOML config file.

::

    [providers.openai]                 # a named provider
    kind = "openai_chat"               # echo | openai_chat | anthropic
    base_url = "https://api.openai.com/v1"
    api_key_env = "OPENAI_API_KEY"     # the *name* of an env var; the key itself is never stored
    headers = { "OpenAI-Organization" = "org-1" }

    [profiles.assistant]
    provider = "openai"
    model = "gpt-4o-mini"
    system_prompt = "You are terse."
    max_tokens = 512
    temperature = 0.2
    options = { seed = 7 }             # passed through to the provider request
    tools = ["clock"]                  # built-in tools this profile may call

A built-in provider ``builtin`` (kind ``echo``) and profile ``echo`` always exist.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROVIDER_KINDS = ("echo", "openai_chat", "anthropic")


class ConfigError(Exception):
    """The config file is invalid; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class ProviderConfig:
    name: str
    kind: str
    base_url: str = ""
    api_key_env: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    timeout_s: float = 120.0
    max_retries: int = 3


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

    unknown = set(data) - {"providers", "profiles", "limits"}
    if unknown:
        raise fail(sorted(unknown)[0], "unknown section (expected providers, profiles, limits)")

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
            {"kind", "base_url", "api_key_env", "headers", "timeout_s", "max_retries"},
        )
        kind = _get(raw, "kind", str, key, fail, required=True)
        if kind not in PROVIDER_KINDS:
            raise fail(f"{key}.kind", f"must be one of {', '.join(PROVIDER_KINDS)}")
        headers = _get(raw, "headers", dict, key, fail) or {}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise fail(f"{key}.headers", "must map strings to strings")
        providers[name] = ProviderConfig(
            name=name,
            kind=kind,
            base_url=_get(raw, "base_url", str, key, fail) or "",
            api_key_env=_get(raw, "api_key_env", str, key, fail) or "",
            headers=headers,
            timeout_s=float(_get(raw, "timeout_s", (int, float), key, fail) or 120.0),
            max_retries=int(_get(raw, "max_retries", int, key, fail) or 3),
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
            },
        )  # fmt: skip
        provider_name = _get(raw, "provider", str, key, fail, required=True)
        provider = providers.get(provider_name)
        if provider is None:
            raise fail(f"{key}.provider", f"no provider named {provider_name!r}")
        tools = _get(raw, "tools", list, key, fail) or []
        if not all(isinstance(t, str) for t in tools):
            raise fail(f"{key}.tools", "must be a list of tool names")
        max_tokens = _get(raw, "max_tokens", int, key, fail)
        if max_tokens is not None and max_tokens < 1:
            raise fail(f"{key}.max_tokens", "must be >= 1")
        temperature = _get(raw, "temperature", (int, float), key, fail)
        profiles[name] = Profile(
            name=name,
            provider=provider,
            model=_get(raw, "model", str, key, fail) or ("echo" if provider.kind == "echo" else ""),
            system_prompt=_get(raw, "system_prompt", str, key, fail) or "",
            description=_get(raw, "description", str, key, fail) or "",
            max_tokens=max_tokens,
            temperature=None if temperature is None else float(temperature),
            options=_get(raw, "options", dict, key, fail) or {},
            tools=tuple(tools),
            max_tool_rounds=_get(raw, "max_tool_rounds", int, key, fail) or 8,
            tool_timeout_s=float(_get(raw, "tool_timeout_s", (int, float), key, fail) or 30.0),
            max_length_continuations=_get(raw, "max_length_continuations", int, key, fail) or 0,
        )
        if not profiles[name].model:
            raise fail(f"{key}.model", "is required")
    limits = _table(data, "limits", fail)
    return Config(providers, profiles, dict(limits))


def _table(data: Mapping[str, Any], key: str, fail: Any) -> Mapping[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, Mapping):
        raise fail(key, "must be a table")
    return value


def _only(raw: Mapping[str, Any], key: str, fail: Any, allowed: set[str]) -> None:
    extra = sorted(set(raw) - allowed)
    if extra:
        raise fail(f"{key}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(allowed))})")


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
