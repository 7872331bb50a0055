"""The registry's configuration: which remote runtimes a Backend drives, and how to reach them.

A Backend keeps it in its own TOML file and hands the parsed tables to
:meth:`RegistryConfig.from_toml_dict` (or :meth:`RegistryConfig.load` reads a file)::

    [[runtimes]]
    target = "10.0.0.5:50051"          # host:port (required)
    alias = "gpu-1"                    # a display name; never sent to the runtime
    token_env = "RUNTIME_GPU1_TOKEN"   # the NAME of the env var holding the bearer token
    expected_runtime_id = "0190..."    # optional: refuse any other runtime at this address
    tls = true                         # verify against the system roots (implied by a file below)
    ca_file = "ca.pem"
    cert_file = "client.pem"           # with key_file: mutual TLS
    key_file = "client.key"
    max_receive_message_bytes = 4194304  # the largest answer taken from it (default 4 MiB)

    [embedded]                         # optional; the Backend builds the embedded runtime from it
    alias = "embedded"
    config = "serve.toml"
    data_dir = "./embedded-data"

Decisions: every mistake is a :class:`RegistryConfigError` (a ``ValueError``) whose message starts
with the key it is about (``runtimes[1].target: ...``) and never contains a token. Unknown keys in
a runtime table are errors (a typo must not silently drop TLS); other top-level tables belong to
the Backend and are ignored here. Duplicate targets, aliases and expected runtime_ids are errors
at load; two targets that turn out to reach one runtime (one runtime_id) can only be seen at run
time — the registry then marks the later one in error (see ``RuntimeRegistry``). Tokens are read
from the environment when the registry is built from the config, not at parse time, so a config
can be checked without secrets at hand.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime_client._client import check_receive_limit

__all__ = [
    "ClientTLS",
    "EmbeddedRuntimeConfig",
    "RegistryConfig",
    "RegistryConfigError",
    "RemoteRuntimeConfig",
]


class RegistryConfigError(ValueError):
    """A bad registry configuration; the message starts with the offending key."""


@dataclass(frozen=True, slots=True)
class ClientTLS:
    """TLS towards one remote runtime: the system roots when no ``ca_file``; ``cert_file`` +
    ``key_file`` present a client certificate (mutual TLS)."""

    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class RemoteRuntimeConfig:
    target: str
    alias: str
    token_env: str | None = None
    tls: ClientTLS | None = None
    expected_runtime_id: str | None = None
    max_receive_message_bytes: int | None = None  # None: the registry's default

    def token(self, key: str = "token_env") -> str | None:
        """The bearer token from the environment (RegistryConfigError naming ``key`` when the
        variable is unset or empty)."""
        if not self.token_env:
            return None
        value = os.environ.get(self.token_env, "").strip()
        if not value:
            raise RegistryConfigError(f"{key}: ${self.token_env} is empty or unset")
        return value


@dataclass(frozen=True, slots=True)
class EmbeddedRuntimeConfig:
    alias: str = "embedded"
    config: str | None = None  # the Runtime's serve.toml (providers, profiles, limits)
    data_dir: str | None = None  # SQLite store directory; None = in memory


_REMOTE_KEYS = frozenset(
    {
        "target",
        "alias",
        "token_env",
        "expected_runtime_id",
        "tls",
        "ca_file",
        "cert_file",
        "key_file",
        "max_receive_message_bytes",
    }
)
_EMBEDDED_KEYS = frozenset({"alias", "config", "data_dir"})


def _str(table: Mapping[str, Any], key: str, where: str, *, required: bool = False) -> str | None:
    value = table.get(key)
    if value is None:
        if required:
            raise RegistryConfigError(f"{where}.{key}: required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise RegistryConfigError(f"{where}.{key}: must be a non-empty string")
    if value != value.strip() or any(ord(c) < 32 for c in value):
        raise RegistryConfigError(f"{where}.{key}: surrounding whitespace or control characters")
    return value


def _target(value: str, where: str) -> str:
    host, sep, port = value.rpartition(":")
    # no "/" or space in the host: a URL ("http://h:50051") was taken for host "http://h", and
    # the runtime was then only ever UNREACHABLE with no word of why
    bad_host = not host or "/" in host or any(c.isspace() for c in host)
    if not sep or bad_host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RegistryConfigError(
            f"{where}.target: expected host:port (no scheme such as http://), got {value!r}"
        )
    return value


def _remote(table: Any, where: str, index: int) -> RemoteRuntimeConfig:
    if not isinstance(table, Mapping):
        raise RegistryConfigError(f"{where}: must be a table")
    unknown = sorted(set(table) - _REMOTE_KEYS)
    if unknown:
        raise RegistryConfigError(f"{where}.{unknown[0]}: unknown key")
    target = _target(_str(table, "target", where, required=True) or "", where)
    tls_flag = table.get("tls", False)
    if not isinstance(tls_flag, bool):
        raise RegistryConfigError(f"{where}.tls: must be true or false")
    files = {k: _str(table, k, where) for k in ("ca_file", "cert_file", "key_file")}
    if (files["cert_file"] is None) != (files["key_file"] is None):
        missing = "key_file" if files["key_file"] is None else "cert_file"
        raise RegistryConfigError(f"{where}.{missing}: cert_file and key_file go together")
    tls = ClientTLS(**files) if tls_flag or any(files.values()) else None
    token_env = _str(table, "token_env", where)
    if token_env is not None and not token_env.replace("_", "").isalnum():
        raise RegistryConfigError(f"{where}.token_env: not an environment variable name")
    max_receive = table.get("max_receive_message_bytes")
    if max_receive is not None:
        try:
            check_receive_limit(max_receive)
        except ValueError as exc:
            raise RegistryConfigError(f"{where}.{exc}") from None
    return RemoteRuntimeConfig(
        max_receive_message_bytes=max_receive,
        target=target,
        alias=_str(table, "alias", where) or f"remote-{index + 1}",
        token_env=token_env,
        tls=tls,
        expected_runtime_id=_str(table, "expected_runtime_id", where),
    )


def _embedded(table: Any) -> EmbeddedRuntimeConfig:
    if not isinstance(table, Mapping):
        raise RegistryConfigError("embedded: must be a table")
    unknown = sorted(set(table) - _EMBEDDED_KEYS)
    if unknown:
        raise RegistryConfigError(f"embedded.{unknown[0]}: unknown key")
    return EmbeddedRuntimeConfig(
        alias=_str(table, "alias", "embedded") or "embedded",
        config=_str(table, "config", "embedded"),
        data_dir=_str(table, "data_dir", "embedded"),
    )


@dataclass(frozen=True, slots=True)
class RegistryConfig:
    runtimes: tuple[RemoteRuntimeConfig, ...] = ()
    embedded: EmbeddedRuntimeConfig | None = None

    @classmethod
    def from_toml_dict(cls, data: Mapping[str, Any]) -> RegistryConfig:
        """Parse the ``[[runtimes]]`` array (and an optional ``[embedded]`` table) of a parsed
        TOML document; other keys are the Backend's and are ignored."""
        if not isinstance(data, Mapping):
            raise RegistryConfigError("runtimes: the configuration must be a table")
        raw = data.get("runtimes", [])
        if not isinstance(raw, list):
            raise RegistryConfigError("runtimes: must be an array of tables ([[runtimes]])")
        remotes = tuple(_remote(t, f"runtimes[{i}]", i) for i, t in enumerate(raw))
        embedded = _embedded(data["embedded"]) if "embedded" in data else None
        seen: dict[tuple[str, str], int] = {}
        if embedded is not None:
            seen[("alias", embedded.alias)] = -1
        for i, r in enumerate(remotes):
            for key, value in (
                ("target", r.target),
                ("alias", r.alias),
                ("expected_runtime_id", r.expected_runtime_id),
            ):
                if value is None:
                    continue
                first = seen.setdefault((key, value), i)
                if first != i:
                    other = "embedded" if first < 0 else f"runtimes[{first}]"
                    raise RegistryConfigError(
                        f"runtimes[{i}].{key}: {value!r} is already used by {other}"
                    )
        return cls(remotes, embedded)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> RegistryConfig:
        """Read a TOML file (RegistryConfigError for unreadable or invalid TOML)."""
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except OSError as exc:
            raise RegistryConfigError(f"{p}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise RegistryConfigError(f"{p}: invalid TOML: {exc}") from exc
        return cls.from_toml_dict(data)
