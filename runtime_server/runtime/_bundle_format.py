"""Config bundle content, version 1: TOML with the profile keys of ``serve --config``, plus named
prompts a profile can reference. Pure: bytes in, checked tables (or a typed error) out.

::

    [prompts]
    terse = "You are terse. Answer in one sentence."

    [profiles.helper]
    provider = "openai"          # a provider the *host* config defines (checked at CreateWorker)
    model = "gpt-4o-mini"        # required: a bundle never relies on a host's model default
    prompt = "terse"             # a prompt above (or system_prompt = "...", not both)
    tools = ["clock"]            # only tools whose capability this host allows
    max_tokens = 256

What a bundle may never carry, refused with CONFIG_BUNDLE_INVALID naming the key path and its
line: secrets (``api_key``, ``api_key_env``, ``token``, ``password``, ``authorization`` ... at any
depth, options included), host facts (``[providers]``, ``base_url``, ``headers``, ``local_model``),
workspace and mount keys (``[workspaces]``, ``workspace``, ``mounts``, ``allowed_roots`` ...) and
absolute paths (any string value that is one path: ``/etc/x``, ``~/x``, ``C:\\x``). Dates and times
are refused too (a snapshot is JSON).

Narrowing only: a bundle can take away from what the host grants, never add to it. A profile's
``tools`` must each be a built-in tool whose capability the host allows (a tool beyond the host
policy is refused, not silently dropped), and its time and round budgets may not exceed the
host's defaults (:data:`CEILINGS`).

Why the digest is over the exact bytes and not over a parsed form: there is no canonical form to
drift as fields are added (every new field was a drift risk in the shipped yoi's hand-canonicalised
digest); two spellings of one config are two bundles, which costs nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from runtime_server import errors
from runtime_server.model import Limits
from runtime_server.runtime._policy import TOOL_CAPABILITY, HostPolicy
from runtime_server.runtime._profiles import (
    BUILTIN_PROVIDER,
    DEFAULT_REQUEST_DEADLINE_S,
    ConfigError,
    Profile,
    ProviderConfig,
    parse_config,
)

MEDIA_TYPE = "application/vnd.worker-runtime.bundle.v1+toml"
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Profile and prompt names: the bundle id's charset (no dots: they would read as key paths).
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")

# Keys a bundle never carries, at any depth, and why.
_SECRET = "secrets never travel in a bundle (API keys stay in the host's environment and config)"
_HOST = "host facts (providers, base URLs, headers, local models) belong to the host's config"
_MOUNT = "workspaces and mounts are host facts: ask for one at CreateWorker, within the host policy"
FORBIDDEN_KEYS: Mapping[str, str] = {
    **dict.fromkeys(
        (
            "api_key", "api_key_env", "apikey", "api-key", "x-api-key", "token", "access_token",
            "secret", "secret_key", "client_secret", "password", "authorization", "credentials",
        ),
        _SECRET,
    ),
    **dict.fromkeys(("providers", "base_url", "headers", "local_model", "endpoint"), _HOST),
    **dict.fromkeys(
        (
            "workspaces", "workspace", "mounts", "mount", "allowed_roots", "protected_paths",
            "root", "data_dir",
        ),
        _MOUNT,
    ),
}  # fmt: skip

PROFILE_KEYS = frozenset(
    {
        "provider", "model", "system_prompt", "prompt", "description", "max_tokens",
        "temperature", "options", "tools", "max_tool_rounds", "tool_timeout_s",
        "max_length_continuations", "examples", "prefill", "prefill_options",
        "request_deadline_s",
    }
)  # fmt: skip

# A bundle may lower these below the host's defaults, never raise them.
CEILINGS: Mapping[str, float] = {
    "max_tool_rounds": 8,
    "tool_timeout_s": 30.0,
    "request_deadline_s": DEFAULT_REQUEST_DEADLINE_S,
    "max_length_continuations": 0,
}

_ABSOLUTE_PATH = re.compile(r"(?:/|~/|~\Z|[A-Za-z]:[\\/])\S*")


@dataclass(frozen=True, slots=True)
class ParsedBundle:
    """A valid bundle: each profile's table with its prompt reference resolved (``prompt`` becomes
    ``system_prompt``), ready to be snapshotted as JSON."""

    profiles: Mapping[str, Mapping[str, Any]]


def digest_of(content: bytes) -> str:
    return "sha256:" + hashlib.sha256(content).hexdigest()


def check_bundle_id(field: str, value: str, lim: Limits) -> None:
    if not value:
        raise errors.InvalidArgument(field, "is required")
    if len(value) > lim.max_bundle_id_chars:
        raise errors.InvalidArgument(
            field,
            f"longer than {lim.max_bundle_id_chars} characters",
            limit=str(lim.max_bundle_id_chars),
        )
    if ID_PATTERN.fullmatch(value) is None:
        raise errors.InvalidArgument(field, "must match [A-Za-z0-9][A-Za-z0-9._-]*")


def parse_bundle(content: bytes, *, policy: HostPolicy, limits: Limits) -> ParsedBundle:
    """Check ``content`` (bytes already within ``limits.max_bundle_bytes``); raise
    ConfigBundleInvalid naming the field and line of the first problem."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = content[: exc.start].count(b"\n") + 1
        raise errors.ConfigBundleInvalid("content", "is not UTF-8 text", line) from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"at line (\d+)", str(exc))
        line = int(found.group(1)) if found else 0
        why = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise errors.ConfigBundleInvalid("content", f"not valid TOML: {why}", line) from None
    except RecursionError:  # tomllib recurses per nesting level: `a = [[[…]]]` a few hundred deep
        why = "not valid TOML: nested too deeply"
        raise errors.ConfigBundleInvalid("content", why, 0) from None
    lines = LineMap(text)

    def fail(path: str, why: str) -> errors.ConfigBundleInvalid:
        return errors.ConfigBundleInvalid(path, why, lines.line_of(path))

    _scan(data, "", fail)
    extra = sorted(set(data) - {"profiles", "prompts"})
    if extra:
        raise fail(extra[0], "unknown section (a bundle has [profiles] and [prompts])")
    prompts = _prompts(data.get("prompts", {}), fail)
    raw_profiles = data.get("profiles", {})
    if not isinstance(raw_profiles, dict):
        raise fail("profiles", "must be a table")
    if not raw_profiles:
        raise fail("profiles", "a bundle defines at least one profile")
    if len(raw_profiles) > limits.max_bundle_profiles:
        raise fail(
            "profiles", f"more than {limits.max_bundle_profiles} profiles (max_bundle_profiles)"
        )
    profiles: dict[str, dict[str, Any]] = {}
    for name, raw in raw_profiles.items():
        key = f"profiles.{name}"
        if NAME_PATTERN.fullmatch(name) is None or len(name) > limits.max_id_chars:
            raise fail(key, f"a profile name must match [A-Za-z0-9][A-Za-z0-9_-]* "
                            f"(at most {limits.max_id_chars} characters)")  # fmt: skip
        if not isinstance(raw, dict):
            raise fail(key, "must be a table")
        profiles[name] = _profile(key, raw, prompts, policy, fail)
    return ParsedBundle(profiles)


def _scan(value: Any, path: str, fail: Any) -> None:
    """Forbidden keys, absolute paths and dates anywhere in the tree (options included)."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = f"{path}.{k}" if path else k
            why = FORBIDDEN_KEYS.get(k.lower())
            if why is not None:
                raise fail(sub, why)
            _scan(v, sub, fail)
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _scan(v, f"{path}[{i}]", fail)
    elif isinstance(value, str):
        if _ABSOLUTE_PATH.fullmatch(value):
            raise fail(path, "absolute paths are host facts and never part of a bundle")
    elif not isinstance(value, bool | int | float):
        raise fail(path, "dates and times are not supported in a bundle")


def _prompts(raw: Any, fail: Any) -> dict[str, str]:
    if not isinstance(raw, dict):
        raise fail("prompts", "must be a table")
    out: dict[str, str] = {}
    for name, value in raw.items():
        key = f"prompts.{name}"
        if NAME_PATTERN.fullmatch(name) is None:
            raise fail(key, "a prompt name must match [A-Za-z0-9][A-Za-z0-9_-]*")
        if isinstance(value, dict):
            extra = sorted(set(value) - {"text"})
            if extra:
                raise fail(f"{key}.{extra[0]}", "unknown key (a prompt table has: text)")
            value = value.get("text")
            key = f"{key}.text"
        if not isinstance(value, str) or not value:
            raise fail(key, "must be non-empty text")
        out[name] = value
    return out


def _profile(
    key: str, raw: dict[str, Any], prompts: Mapping[str, str], policy: HostPolicy, fail: Any
) -> dict[str, Any]:
    extra = sorted(set(raw) - PROFILE_KEYS)
    if extra:
        raise fail(f"{key}.{extra[0]}", f"unknown key (allowed: {', '.join(sorted(PROFILE_KEYS))})")
    if not isinstance(raw.get("provider"), str) or not raw["provider"]:
        raise fail(f"{key}.provider", "is required: the name of a provider the host defines")
    if not isinstance(raw.get("model"), str) or not raw["model"]:
        raise fail(f"{key}.model", "is required (a bundle never relies on a host's default)")
    table = dict(raw)
    if "prompt" in table:
        if "system_prompt" in table:
            raise fail(f"{key}.prompt", "give prompt or system_prompt, not both")
        ref = table.pop("prompt")
        if not isinstance(ref, str) or ref not in prompts:
            raise fail(f"{key}.prompt", f"names no prompt of this bundle ({ref!r})")
        table["system_prompt"] = prompts[ref]
    tools = table.get("tools", [])
    if isinstance(tools, list):
        for i, tool in enumerate(tools):
            cap = TOOL_CAPABILITY.get(tool) if isinstance(tool, str) else None
            if cap is None:
                raise fail(f"{key}.tools[{i}]", f"{tool!r} is not a built-in tool")
            if cap not in policy.allowed_capabilities:
                raise fail(
                    f"{key}.tools[{i}]",
                    f"tool {tool!r} needs capability {cap!r}, which this host does not allow "
                    "(a bundle may narrow the host policy, never widen it)",
                )
    for name, ceiling in CEILINGS.items():
        value = table.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > ceiling:
            raise fail(
                f"{key}.{name}",
                f"{value:g} is above the host's {ceiling:g} (a bundle may lower it, never "
                "raise it)",
            )
    # Everything else (types, ranges, examples) is checked by the host config's own parser.
    profile_from_table(key.split(".", 1)[1], table, BUILTIN_PROVIDER, fail=fail)
    return table


def profile_from_table(
    name: str, table: Mapping[str, Any], provider: ProviderConfig, *, fail: Any = None
) -> Profile:
    """A Profile from a bundle profile's (checked) table, on ``provider`` (the host's)."""
    data = {"profiles": {name: {**table, "provider": BUILTIN_PROVIDER.name}}}
    try:
        profile = parse_config(data, source="bundle").profiles[name]
    except ConfigError as exc:
        if fail is None:
            raise
        # "bundle: profiles.x.key: why" -> the key path and why
        _, _, rest = str(exc).partition(": ")
        path, _, why = rest.partition(": ")
        raise fail(path, why) from None
    return replace(profile, provider=provider, model=str(table["model"]))


def snapshot_json(bundle_id: str, digest: str, name: str, table: Mapping[str, Any]) -> str:
    """A worker's resolved profile as stored: the bundle it came from and its table."""
    return json.dumps(
        {"bundle_id": bundle_id, "digest": digest, "profile": name, "table": table},
        sort_keys=True,
        separators=(",", ":"),
    )


class LineMap:
    """Where each key path of a TOML text is written: a line scanner good enough to point at a
    key (tomllib reports no positions). Table headers and ``key =`` lines are recorded with the
    current table prefix; keys inside inline tables under the key that holds them. A path with
    list indices (``examples[2].role``) takes the n-th place its index-free form was written,
    falling back to the nearest ancestor that was."""

    _KEY = r'(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|\'[^\']*\')'
    _DOTTED = rf"{_KEY}(?:\s*\.\s*{_KEY})*"
    _HEADER = re.compile(rf"\s*\[\[?\s*({_DOTTED})\s*\]\]?")
    _ASSIGN = re.compile(rf"\s*({_DOTTED})\s*=")
    _INLINE = re.compile(rf"[{{,]\s*({_DOTTED})\s*=")
    _PART = re.compile(_KEY)

    def __init__(self, text: str) -> None:
        self._where: dict[str, list[int]] = {}
        table = ""
        holder = ""  # the key whose value continues over the following lines
        in_string: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            if in_string is not None:
                if line.count(in_string) % 2 == 1:
                    in_string = None
                continue
            header = self._HEADER.match(line)
            if header and not self._ASSIGN.match(line):
                table = self._join(header.group(1))
                holder = table
                self._note(table, number)
                continue
            assign = self._ASSIGN.match(line)
            if assign:
                holder = ".".join(p for p in (table, self._join(assign.group(1))) if p)
                self._note(holder, number)
            for inline in self._INLINE.finditer(line):
                self._note(f"{holder}.{self._join(inline.group(1))}", number)
            for quote in ('"""', "'''"):
                if line.count(quote) % 2 == 1:
                    in_string = quote

    def _join(self, dotted: str) -> str:
        return ".".join(p.strip("\"'") for p in self._PART.findall(dotted))

    def _note(self, path: str, line: int) -> None:
        self._where.setdefault(path, []).append(line)
        parts = path.split(".")
        for n in range(1, len(parts)):  # [a.b.c] also places a and a.b, if nothing else did
            self._where.setdefault(".".join(parts[:n]), [line])

    def line_of(self, path: str) -> int:
        parts = path.split(".")
        while parts:
            exact = self._where.get(".".join(parts))  # a quoted key may hold "[" itself
            if exact:
                return exact[0]
            plain, nth = [], 0
            for part in parts:
                base, _, index = part.partition("[")
                plain.append(base)
                digits = index.split("]")[0]
                if digits.isdigit():  # a list index; a "[" inside a quoted key is no index
                    nth = int(digits)
            found = self._where.get(".".join(plain))
            if found:
                return found[nth] if nth < len(found) else found[0]
            parts = parts[:-1]
        return 0
