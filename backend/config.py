"""The Backend's configuration: one TOML file, every key optional.

::

    listen = "127.0.0.1:8080"        # loopback by default: the console is a local tool
    data_dir = "backend-data"        # the embedded runtime's SQLite file lives here
    runtime_config = "config/serve.toml"   # profiles of the embedded runtime (default: built-ins)
    token_env = "WORKER_BACKEND_TOKEN"     # login token, read from this environment variable
    max_streams = 64                 # open console event streams (SSE), over all browsers
    max_streams_per_client = 16      # ... per login session (with a token), else per address
    max_connections = 256            # open HTTP connections (default: max(256, max_streams + 64))
    max_connections_per_client = 64  # ... per client address (default: a quarter of it)
    request_timeout_s = 30.0         # a request's headers and body must arrive within this
    send_timeout_s = 60.0            # a client that reads nothing for this long is cut
    heartbeat_s = 15.0               # SSE comment lines while a stream is quiet
    max_input_chars = 32000          # checked before a request reaches a runtime
    bundles_dir = "bundles"          # config bundles pushed to every runtime (one *.toml each)
    allowed_hosts = ["console.lan"]  # host names an open console answers to (besides addresses)

    [companion]
    profile = ""                     # default: smollm2-chat when the local model is installed
    display_name = "Companion"

    [[runtimes]]                     # remote runtimes (worker-runtime serve)
    target = "10.0.0.5:50051"
    alias = "lab"
    token_env = "LAB_RUNTIME_TOKEN"  # the runtime's bearer token, from the environment
    expected_runtime_id = ""
    ca_file = "tls/ca.pem"           # TLS against this CA (tls = true: the system roots)
    cert_file = "tls/client.pem"     # with key_file: mutual TLS
    key_file = "tls/client.key"

Secrets are never written in the file: tokens come from environment variables it names, so the
file can be committed and shown. Unknown keys are errors (a typo must not silently disable a
setting).

Decisions:

- The ``[[runtimes]]`` tables are parsed by runtime_client's
  :meth:`~runtime_client.RegistryConfig.from_toml_dict` — the one parser of a registry's remote
  runtimes (target, alias, token_env, expected_runtime_id, tls, ca_file, cert_file, key_file) —
  and its errors come back as :class:`BackendConfigError` naming the key. The alias
  ``embedded`` is the Backend's own runtime's and taken.
- Relative TLS file paths (like ``data_dir`` and ``runtime_config``) are relative to the config
  file's folder, so a config and its certificates can move together. The files are read and
  checked when the Backend builds its registry (``backend.service.build_registry``, before the
  port is bound), not here: a config can be checked where the files are not mounted.
- Tokens are read from the environment at parse time (a missing variable names its key).
- ``allow_unauthenticated``: the console refuses to listen on a non-loopback address without a
  login token (``token_env``) — an open console drives agents and their tools — unless this is
  true (or ``serve --allow-unauthenticated``). See :func:`exposure_error`.
- ``allowed_hosts``: the host names a console without a token answers to, besides IP addresses
  and ``localhost``; any other ``Host`` header is refused (DNS rebinding: see
  ``backend.security``). ``"*"`` allows any name.
- ``max_connections``, ``request_timeout_s``, ``send_timeout_s``: the HTTP server's bounds on
  connections, slow requests (slowloris) and clients that stop reading (``backend.http_limits``).
  Event streams are connections too, so ``max_connections`` must exceed ``max_streams``.
- ``bundles_dir`` (default: none) must be an existing directory when the Backend starts; what is
  in it is read by ``backend._bundle_sync`` (and re-read while the Backend runs).
"""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime_client import ClientTLS, RegistryConfig, RegistryConfigError
from runtime_server.cli import is_loopback

__all__ = [
    "BackendConfig",
    "BackendConfigError",
    "RemoteRuntime",
    "check_bundles_dir",
    "exposure_error",
    "listen_error",
    "load_config",
    "parse_config",
]

DEFAULT_LISTEN = "127.0.0.1:8080"
_HOST_NAME = re.compile(r"\*|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?")


class BackendConfigError(ValueError):
    """The configuration file is unreadable or holds a bad value (the message names the key)."""


@dataclass(frozen=True, slots=True)
class RemoteRuntime:
    target: str
    alias: str = ""
    token: str | None = field(default=None, repr=False)  # never printed
    expected_runtime_id: str | None = None
    tls: ClientTLS | None = None  # None: plaintext; file paths already resolved
    max_receive_message_bytes: int | None = None  # None: the registry's default (4 MiB)


@dataclass(frozen=True, slots=True)
class BackendConfig:
    listen: str = DEFAULT_LISTEN
    data_dir: Path = Path("backend-data")
    runtime_config: Path | None = None
    store: str = "sqlite"  # "sqlite" (under data_dir) or "memory"
    token: str | None = field(default=None, repr=False)  # the console's login token
    max_streams: int = 64
    max_streams_per_client: int = 16  # per session (token) or address (backend.sse.StreamSlots)
    heartbeat_s: float = 15.0
    max_input_chars: int = 32_000
    companion_profile: str = ""  # "" = smollm2-chat where installed, else echo
    companion_name: str = "Companion"
    runtimes: tuple[RemoteRuntime, ...] = ()
    bundles_dir: Path | None = None  # config bundles to push (backend._bundle_sync)
    allow_unauthenticated: bool = False  # an open console on a network address, on purpose
    allowed_hosts: tuple[str, ...] = ()  # names an open console answers to (backend.security)
    max_connections: int = 256  # the HTTP server's bounds (backend.http_limits)
    max_connections_per_client: int = 64
    request_timeout_s: float = 30.0
    send_timeout_s: float = 60.0
    # addresses/networks of the reverse proxies whose X-Forwarded-For / -Proto are believed; none
    # by default: a header from anyone else (a local process included) is ignored
    trusted_proxies: tuple[str, ...] = ()


_TOP = {
    "allow_unauthenticated",
    "allowed_hosts",
    "listen",
    "data_dir",
    "runtime_config",
    "store",
    "token_env",
    "max_streams",
    "max_streams_per_client",
    "max_connections",
    "max_connections_per_client",
    "request_timeout_s",
    "send_timeout_s",
    "heartbeat_s",
    "max_input_chars",
    "companion",
    "runtimes",
    "bundles_dir",
    "trusted_proxies",
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

    def secret(obj: Mapping[str, Any], where: str, *, bearer: bool = False) -> str | None:
        # stripped: a Kubernetes Secret made from a file ends with a newline, which made the
        # login token impossible to type (and a runtime's token impossible to send)
        name = typed(obj, "token_env", str, "", where)
        if not name:
            return None
        value = str(environ.get(name, "")).strip()
        if not value:
            raise fail(where + "token_env", f"environment variable {name} is not set")
        if bearer and not (value.isascii() and value.isprintable() and " " not in value):
            raise fail(
                where + "token_env",
                f"${name} has a space, a control or a non-ASCII character, which gRPC metadata "
                "cannot carry (the token is not shown)",
            )
        return value

    listen = typed(data, "listen", str, DEFAULT_LISTEN)
    bad_listen = listen_error(listen)
    if bad_listen is not None:
        raise fail("listen", bad_listen)
    store = typed(data, "store", str, "sqlite")
    if store not in ("sqlite", "memory"):
        raise fail("store", "must be sqlite or memory")
    max_streams = typed(data, "max_streams", int, 64)
    if not 1 <= max_streams <= 10_000:
        raise fail("max_streams", "must be 1..10000")
    per_client_streams = typed(data, "max_streams_per_client", int, min(16, max_streams))
    if not 1 <= per_client_streams <= max_streams:
        raise fail("max_streams_per_client", f"must be 1..max_streams ({max_streams})")
    max_connections = typed(data, "max_connections", int, max(256, max_streams + 64))
    if not max_streams < max_connections <= 100_000:
        raise fail(
            "max_connections", f"must be more than max_streams ({max_streams}) and <= 100000"
        )
    per_client_connections = typed(
        data,
        "max_connections_per_client",
        int,
        min(max_connections, max(per_client_streams + 16, max_connections // 4)),
    )
    if not per_client_streams < per_client_connections <= max_connections:
        raise fail(
            "max_connections_per_client",
            f"must be more than max_streams_per_client ({per_client_streams}) and at most "
            f"max_connections ({max_connections})",
        )
    request_timeout = typed(data, "request_timeout_s", float, 30.0)
    if not 0.05 <= request_timeout <= 3600:
        raise fail("request_timeout_s", "must be 0.05..3600")
    send_timeout = typed(data, "send_timeout_s", float, 60.0)
    if not 0.05 <= send_timeout <= 3600:
        raise fail("send_timeout_s", "must be 0.05..3600")
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
    try:
        # the embedded table only reserves the alias of the Backend's own runtime
        registry = RegistryConfig.from_toml_dict(
            {"runtimes": data.get("runtimes", []), "embedded": {"alias": "embedded"}}
        )
    except RegistryConfigError as exc:  # its message starts with the key ("runtimes[0].target")
        raise BackendConfigError(f"{source}: {exc}") from None

    def tls(value: ClientTLS | None) -> ClientTLS | None:
        if value is None:
            return None
        files = (value.ca_file, value.cert_file, value.key_file)
        ca, cert, key = (str(path(f)) if f is not None else None for f in files)
        return ClientTLS(ca_file=ca, cert_file=cert, key_file=key)

    runtimes = [
        RemoteRuntime(
            target=remote.target,
            alias=remote.alias,
            token=secret({"token_env": remote.token_env or ""}, f"runtimes[{i}].", bearer=True),
            expected_runtime_id=remote.expected_runtime_id,
            tls=tls(remote.tls),
            max_receive_message_bytes=remote.max_receive_message_bytes,
        )
        for i, remote in enumerate(registry.runtimes)
    ]
    allowed_hosts = typed(data, "allowed_hosts", list, [])
    for i, name in enumerate(allowed_hosts):
        if not isinstance(name, str) or not _HOST_NAME.fullmatch(name):
            raise fail(f"allowed_hosts[{i}]", 'must be a host name (no port, no scheme) or "*"')
    trusted_proxies = typed(data, "trusted_proxies", list, [])
    for i, entry in enumerate(trusted_proxies):
        try:
            ipaddress.ip_network(entry, strict=False)
        except (TypeError, ValueError):
            raise fail(
                f"trusted_proxies[{i}]",
                'must be an IP address or network ("10.0.0.7", "10.0.0.0/8")',
            ) from None
    runtime_config = typed(data, "runtime_config", str, "")
    bundles_dir = typed(data, "bundles_dir", str, "")
    return BackendConfig(
        listen=listen,
        data_dir=path(typed(data, "data_dir", str, "backend-data")),
        runtime_config=path(runtime_config) if runtime_config else None,
        store=store,
        token=secret(data, ""),
        max_streams=max_streams,
        max_streams_per_client=per_client_streams,
        heartbeat_s=heartbeat,
        max_input_chars=max_input,
        companion_profile=typed(companion, "profile", str, "", "companion."),
        companion_name=typed(companion, "display_name", str, "Companion", "companion."),
        runtimes=tuple(runtimes),
        bundles_dir=path(bundles_dir) if bundles_dir else None,
        allow_unauthenticated=typed(data, "allow_unauthenticated", bool, False),
        allowed_hosts=tuple(name.lower() for name in allowed_hosts),
        max_connections=max_connections,
        max_connections_per_client=per_client_connections,
        trusted_proxies=tuple(str(ipaddress.ip_network(e, strict=False)) for e in trusted_proxies),
        request_timeout_s=request_timeout,
        send_timeout_s=send_timeout,
    )


def listen_error(listen: str) -> str | None:
    """Why ``listen`` is not a HOST:PORT the Backend can bind (port 0..65535), or None. One rule
    for the config's ``listen`` and the ``--listen`` flag (which once reached ``bind`` unchecked:
    a port past 65535 was an OverflowError traceback)."""
    host, _, port = listen.rpartition(":")
    if not host.strip("[]") or not port.isascii() or not port.isdigit() or int(port) > 65535:
        return "must be HOST:PORT (a port 0..65535; 0: any free port)"
    return None


def exposure_error(config: BackendConfig) -> str | None:
    """Why the console must not serve on ``config.listen``, or None.

    Without a login token, the console drives every agent it reaches, with their tools (files of
    their workspaces, commands): open to anyone who can connect. That is fine on loopback
    (127.0.0.0/8, ::1, a name such as ``localhost`` that resolves only to loopback: this
    machine's users, the default), refused on any other address (``0.0.0.0``, a LAN address)
    unless the operator says so with ``allow_unauthenticated = true`` or
    ``--allow-unauthenticated``. Loopback is decided by ``worker-runtime serve``'s own rule
    (``runtime_server.cli.is_loopback``), so both commands agree."""
    host = config.listen.rpartition(":")[0]
    if config.token is not None or config.allow_unauthenticated or is_loopback(host):
        return None
    return (
        f"listen: {config.listen} is not a loopback address and the console has no login token: "
        "anyone who can connect could drive the agents. Set token_env in the config (the name "
        "of an environment variable holding the token), or listen on 127.0.0.1; to serve an "
        "open console anyway, set allow_unauthenticated = true (or --allow-unauthenticated)"
    )


def check_bundles_dir(path: Path | None) -> None:
    """``bundles_dir`` names an existing directory (checked at start, not at parse time: the
    file may be parsed on another host). A missing one is an error, not an empty set: a typo
    must not silently leave every runtime without its bundles."""
    if path is not None and not path.is_dir():
        why = "does not exist" if not path.exists() else "is not a directory"
        raise BackendConfigError(f"bundles_dir: {path} {why}")
