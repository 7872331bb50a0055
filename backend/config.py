"""The Backend's configuration: one TOML file, every key optional.

::

    listen = "127.0.0.1:8080"        # loopback by default: the console is a local tool
    data_dir = "backend-data"        # the embedded runtime's SQLite file lives here
    runtime_config = "config/serve.toml"   # profiles of the embedded runtime (default: built-ins)
    token_env = "WORKER_BACKEND_TOKEN"     # login token, read from this environment variable
    max_streams = 64                 # open console event streams (SSE), over all browsers
    heartbeat_s = 15.0               # SSE comment lines while a stream is quiet
    max_input_chars = 32000          # checked before a request reaches a runtime
    bundles_dir = "bundles"          # config bundles pushed to every runtime (one *.toml each)

    [companion]
    profile = ""                     # default: smollm2-chat when the local model is installed
    display_name = "Companion"

    [[runtimes]]                     # remote runtimes (worker-runtime serve)
    target = "127.0.0.1:50051"
    alias = "lab"
    token_env = "LAB_RUNTIME_TOKEN"  # the runtime's bearer token, from the environment
    expected_runtime_id = ""

Secrets are never written in the file: tokens come from environment variables it names, so the
file can be committed and shown. Unknown keys are errors (a typo must not silently disable a
setting).

``bundles_dir`` (default: none) must be an existing directory when the Backend starts; what is
in it is read by ``backend._bundle_sync`` (and re-read while the Backend runs).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "BackendConfig",
    "BackendConfigError",
    "RemoteRuntime",
    "check_bundles_dir",
    "load_config",
    "parse_config",
]

DEFAULT_LISTEN = "127.0.0.1:8080"


class BackendConfigError(ValueError):
    """The configuration file is unreadable or holds a bad value (the message names the key)."""


@dataclass(frozen=True, slots=True)
class RemoteRuntime:
    target: str
    alias: str = ""
    token: str | None = field(default=None, repr=False)  # never printed
    expected_runtime_id: str | None = None


@dataclass(frozen=True, slots=True)
class BackendConfig:
    listen: str = DEFAULT_LISTEN
    data_dir: Path = Path("backend-data")
    runtime_config: Path | None = None
    store: str = "sqlite"  # "sqlite" (under data_dir) or "memory"
    token: str | None = field(default=None, repr=False)  # the console's login token
    max_streams: int = 64
    heartbeat_s: float = 15.0
    max_input_chars: int = 32_000
    companion_profile: str = ""  # "" = smollm2-chat where installed, else echo
    companion_name: str = "Companion"
    runtimes: tuple[RemoteRuntime, ...] = ()
    bundles_dir: Path | None = None  # config bundles to push (backend._bundle_sync)


_TOP = {
    "listen",
    "data_dir",
    "runtime_config",
    "store",
    "token_env",
    "max_streams",
    "heartbeat_s",
    "max_input_chars",
    "companion",
    "runtimes",
    "bundles_dir",
}


def load_config(path: Path | None, *, env: Mapping[str, str] | None = None) -> BackendConfig:
    """Read ``path`` (None: every default). Relative paths are relative to the file's folder."""
    if path is None:
        return parse_config({}, env=env)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BackendConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise BackendConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, env=env, base=path.parent, source=str(path))


def parse_config(
    data: Mapping[str, Any],
    *,
    env: Mapping[str, str] | None = None,
    base: Path | None = None,
    source: str = "<config>",
) -> BackendConfig:
    environ = os.environ if env is None else env

    def fail(key: str, why: str) -> BackendConfigError:
        return BackendConfigError(f"{source}: {key}: {why}")

    unknown = sorted(set(data) - _TOP)
    if unknown:
        raise fail(unknown[0], f"unknown key (known: {', '.join(sorted(_TOP))})")

    def typed(obj: Mapping[str, Any], key: str, kind: type, default: Any, where: str = "") -> Any:
        value = obj.get(key, default)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise fail(where + key, f"must be a {kind.__name__}")
        return value

    def path(value: str) -> Path:
        p = Path(value)
        return p if p.is_absolute() or base is None else base / p

    def secret(obj: Mapping[str, Any], where: str) -> str | None:
        name = typed(obj, "token_env", str, "", where)
        if not name:
            return None
        value = environ.get(name, "")
        if not value:
            raise fail(where + "token_env", f"environment variable {name} is not set")
        return str(value)

    listen = typed(data, "listen", str, DEFAULT_LISTEN)
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise fail("listen", "must be HOST:PORT")
    store = typed(data, "store", str, "sqlite")
    if store not in ("sqlite", "memory"):
        raise fail("store", "must be sqlite or memory")
    max_streams = typed(data, "max_streams", int, 64)
    if not 1 <= max_streams <= 10_000:
        raise fail("max_streams", "must be 1..10000")
    heartbeat = typed(data, "heartbeat_s", float, 15.0)
    if not 0.05 <= heartbeat <= 300:
        raise fail("heartbeat_s", "must be 0.05..300")
    max_input = typed(data, "max_input_chars", int, 32_000)
    if max_input < 1:
        raise fail("max_input_chars", "must be >= 1")
    companion = typed(data, "companion", dict, {})
    extra = sorted(set(companion) - {"profile", "display_name"})
    if extra:
        raise fail(f"companion.{extra[0]}", "unknown key (known: display_name, profile)")
    runtimes: list[RemoteRuntime] = []
    for i, item in enumerate(typed(data, "runtimes", list, [])):
        where = f"runtimes[{i}]."
        if not isinstance(item, dict):
            raise fail(f"runtimes[{i}]", "must be a table")
        extra = sorted(set(item) - {"target", "alias", "token_env", "expected_runtime_id"})
        if extra:
            raise fail(where + extra[0], "unknown key")
        target = typed(item, "target", str, "", where)
        if not target:
            raise fail(where + "target", "is required (HOST:PORT)")
        runtimes.append(
            RemoteRuntime(
                target=target,
                alias=typed(item, "alias", str, "", where),
                token=secret(item, where),
                expected_runtime_id=typed(item, "expected_runtime_id", str, "", where) or None,
            )
        )
    runtime_config = typed(data, "runtime_config", str, "")
    bundles_dir = typed(data, "bundles_dir", str, "")
    return BackendConfig(
        listen=listen,
        data_dir=path(typed(data, "data_dir", str, "backend-data")),
        runtime_config=path(runtime_config) if runtime_config else None,
        store=store,
        token=secret(data, ""),
        max_streams=max_streams,
        heartbeat_s=heartbeat,
        max_input_chars=max_input,
        companion_profile=typed(companion, "profile", str, "", "companion."),
        companion_name=typed(companion, "display_name", str, "Companion", "companion."),
        runtimes=tuple(runtimes),
        bundles_dir=path(bundles_dir) if bundles_dir else None,
    )


def check_bundles_dir(path: Path | None) -> None:
    """``bundles_dir`` names an existing directory (checked at start, not at parse time: the
    file may be parsed on another host). A missing one is an error, not an empty set: a typo
    must not silently leave every runtime without its bundles."""
    if path is not None and not path.is_dir():
        why = "does not exist" if not path.exists() else "is not a directory"
        raise BackendConfigError(f"bundles_dir: {path} {why}")
