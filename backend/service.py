"""The Backend's lifecycle: the embedded Runtime, the RuntimeRegistry, the Companion.

Start order: the embedded Runtime (SQLite under ``data_dir``, so the Companion and its history
survive a restart), then the registry with it and every remote runtime of the config (the
registry connects in the background: a remote runtime that is down never stops the Backend from
starting), with the bundle sync following it (``backend._bundle_sync``), then the Companion.
Everything is entered into one ``AsyncExitStack``, so ``close`` unwinds in reverse order
(registry first: its subscriptions end before the runtime they read from closes) and is safe to
call twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path
from typing import Any

import engine
from backend._bundle_sync import BundleSync
from backend._companion import ensure_companion
from backend.config import BackendConfig, BackendConfigError
from backend.security import Sessions
from backend.sse import StreamSlots
from runtime_client import RuntimeHandle, RuntimeRegistry
from runtime_client.errors import RuntimeServiceError
from runtime_server.cli import StartupError, check_secret_mode
from runtime_server.embedded import EmbeddedRuntime
from runtime_server.model import Limits
from runtime_server.runtime import Config, ConfigError, limits_from, load_config, parse_config
from runtime_server.store import MemoryStore, SqliteStore, Store

__all__ = ["DEFAULT_RUNTIME_CONFIG", "LOCAL_CHAT_PROFILE", "Backend", "build_registry"]

log = logging.getLogger(__name__)

LOCAL_CHAT_PROFILE = "smollm2-chat"

# With no runtime_config: the built-in echo, a slow echo to watch a run stream (and cancel it),
# and the local SmolLM2 chat model (started on first use; runs fail clearly if not installed).
DEFAULT_RUNTIME_CONFIG: dict[str, Any] = {
    "providers": {"local": {"kind": "openai_chat", "local_model": "smollm2", "timeout_s": 60}},
    "profiles": {
        "echo-slow": {
            "provider": "builtin",
            "description": "Offline echo, 200 ms per word.",
            "options": {"delay_ms": 200},
        },
        LOCAL_CHAT_PROFILE: {
            "provider": "local",
            "description": "Offline chat: SmolLM2-135M on llama.cpp (starts on first use).",
            "max_tokens": 64,
            "temperature": 0,
            "options": {"seed": 42},
        },
    },
}


def runtime_config(config: BackendConfig) -> tuple[Config, Limits]:
    """The embedded runtime's config and limits. A mistake in ``runtime_config`` (a missing file,
    bad TOML, an unknown provider or limit) is a BackendConfigError naming the key and the
    file's own key (``runtime_config: serve.toml: limits.x: unknown limit``): ``serve`` prints
    it as one line, where it once raised a traceback from the embedded runtime's start."""
    try:
        if config.runtime_config is not None:
            rconfig = load_config(config.runtime_config)
        else:
            rconfig = parse_config(DEFAULT_RUNTIME_CONFIG, source="<backend default>")
        return rconfig, limits_from(rconfig.limits)
    except (ConfigError, ValueError) as exc:
        where = config.runtime_config or "<backend default>"
        message = str(exc)
        prefix = "" if message.startswith(str(where)) else f"{where}: "
        raise BackendConfigError(f"runtime_config: {prefix}{message}") from None


def companion_profile(config: BackendConfig, profiles: set[str]) -> str:
    """The configured profile; else the local chat model where it is installed; else echo."""
    if config.companion_profile:
        return config.companion_profile
    if LOCAL_CHAT_PROFILE in profiles and engine.local_model_unavailable() is None:
        return LOCAL_CHAT_PROFILE
    return "echo"


def build_registry(config: BackendConfig, embedded: RuntimeHandle | None = None) -> RuntimeRegistry:
    """A registry of ``embedded`` (first, alias ``embedded``) and the config's remote runtimes,
    not started (no connection yet). Each runtime's TLS files are read and checked here — a
    missing file, a certificate without its key, a key that does not match, a private key that
    every user of the host may read (``worker-runtime serve``'s own rule for its token and key
    files, ``runtime_server.cli.check_secret_mode``: anyone logged in could take the Backend's
    client identity and, with its token, drive the runtime) — as a BackendConfigError naming
    ``runtimes[i].<key>``; the CLI calls this before binding its port, so such a mistake stops
    ``serve`` with that message."""
    registry = RuntimeRegistry()
    if embedded is not None:
        registry.add_embedded(embedded, alias="embedded")
    for i, remote in enumerate(config.runtimes):
        try:
            if remote.tls is not None and remote.tls.key_file is not None:
                check_secret_mode(f"runtimes[{i}].key_file", Path(remote.tls.key_file))
        except StartupError as exc:  # its message names the key, the path and the mode
            raise BackendConfigError(str(exc)) from None
        try:
            registry.add_remote(
                remote.target,
                alias=remote.alias or None,
                token=remote.token,
                tls=remote.tls,
                expected_runtime_id=remote.expected_runtime_id,
                max_receive_message_bytes=remote.max_receive_message_bytes,
            )
        except ValueError as exc:  # "ca_file: No such file or directory: /path", named
            raise BackendConfigError(f"runtimes[{i}].{exc}") from None
    return registry


class Backend:
    def __init__(self, config: BackendConfig) -> None:
        self.config = config
        self.streams = StreamSlots(config.max_streams, config.max_streams_per_client)
        self.sessions = Sessions() if config.token else None  # None: an open console
        self.failed_logins = asyncio.Lock()  # wrong login tokens are answered one at a time
        self.logins_waiting = 0  # wrong logins queued on it (at most MAX_WAITING_LOGINS)
        self.registry: RuntimeRegistry | None = None
        self.embedded_runtime_id = ""
        self.companion_id = ""
        self.bundles = BundleSync(config.bundles_dir)
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        """Open the embedded runtime, start the registry, ensure the Companion. On a failure
        everything acquired so far is released before the error is raised."""
        try:
            await self._start()
        except BaseException:
            await self._stack.aclose()
            raise

    async def _start(self) -> None:
        cfg = self.config
        rconfig, limits = runtime_config(cfg)
        store: Store
        if cfg.store == "sqlite":
            # private (0700): the embedded runtime's transcripts are the users' data
            await asyncio.to_thread(Path(cfg.data_dir).mkdir, 0o700, parents=True, exist_ok=True)
            store = SqliteStore(
                Path(cfg.data_dir) / "runtime.sqlite3",
                retention_events=limits.event_retention_events,
                retention_seconds=limits.event_retention_seconds,
            )
        else:
            store = MemoryStore(
                retention_events=limits.event_retention_events,
                retention_seconds=limits.event_retention_seconds,
            )
        embedded = await EmbeddedRuntime.open(rconfig, store=store, limits=limits)
        self._stack.push_async_callback(embedded.close)
        info = await embedded.get_runtime()
        self.embedded_runtime_id = info.runtime_id
        registry = build_registry(cfg, embedded)
        # before the registry starts: the first READY of every runtime pushes the bundles
        await self.bundles.start(registry)
        await registry.start()
        self._stack.push_async_callback(registry.close)
        self._stack.push_async_callback(self.bundles.close)  # unwound first: no push mid-close
        self.registry = registry
        profiles = {p.name for p in await embedded.list_profiles()}
        if cfg.companion_profile and cfg.companion_profile not in profiles:
            raise BackendConfigError(
                f"companion.profile: no profile {cfg.companion_profile!r} on the embedded runtime "
                f"(its profiles: {', '.join(sorted(profiles))})"
            )
        try:
            worker = await ensure_companion(
                embedded,
                profile=companion_profile(cfg, profiles),
                display_name=cfg.companion_name,
            )
        except RuntimeServiceError as exc:  # e.g. a display_name past the runtime's limit
            field = str(exc.metadata.get("field", ""))
            key = "companion.display_name" if field == "display_name" else "companion"
            raise BackendConfigError(f"{key}: {exc.message}") from None
        self.companion_id = worker.worker_id
        log.info("companion %s on profile %s", worker.worker_id, worker.profile)

    async def close(self) -> None:
        await self._stack.aclose()

    def require_registry(self) -> RuntimeRegistry:
        if self.registry is None:
            raise RuntimeError("the Backend is not started")
        return self.registry
