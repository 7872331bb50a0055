"""``worker-runtime``: ``serve`` runs the server; every other command is a client command
(runtime_client.cli)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import re
import signal
import sys
from pathlib import Path
from typing import Any

import engine
from runtime_server._malloc import pin_mmap_threshold
from runtime_server._startup_checks import (
    LOG_LEVELS,
    StartupError,
    check_bindable,
    check_exposure,
    check_secret_mode,
    check_tls,
    grace_seconds,
    is_loopback,
    listen_address,
    log_level,
)
from runtime_server.errors import StoreFailure
from runtime_server.event_loop import (
    DEFAULT_EVENT_LOOP,
    EVENT_LOOPS,
    loop_factory,
    running_loop_name,
)
from runtime_server.logformat import LOG_FORMATS, configure
from runtime_server.runtime import (
    ConfigError,
    Runtime,
    RuntimeCloseError,
    default_config,
    limits_from,
    load_config,
)
from runtime_server.store import MemoryStore, SqliteStore, Store, StoreOpenError

DEFAULT_DATA_DIR = "worker-runtime-data"
ACCESS_LOG_MODES = ("all", "errors", "off")  # runtime_server.grpc._observe (imported lazily)


# What ships with serve and is checked from outside (deploy/ manifests, the exposure rule's tests).
__all__ = [
    "StartupError",
    "check_exposure",
    "check_secret_mode",
    "is_loopback",
    "main",
    "serve",
    "serve_options",
]


def _add_serve(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the gRPC server", description="Run the gRPC server.")
    serve_options(p)
    p.set_defaults(direct=_serve_main)


def serve_options(p: argparse.ArgumentParser) -> None:
    """Add the ``serve`` flags to ``p``: public, so what ships (deploy/ manifests, docs) can be
    checked against the flags the server really accepts."""
    p.add_argument(
        "--listen",
        default="127.0.0.1:50051",
        type=listen_address,
        help="host:port (port 0 = any free port); a port in use is an error",
    )
    p.add_argument("--config", type=Path, help="TOML file with providers, profiles and limits")
    p.add_argument("--store", choices=("sqlite", "memory"), default="sqlite")
    p.add_argument(
        "--data-dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help=f"where the SQLite store lives (default ./{DEFAULT_DATA_DIR})",
    )
    p.add_argument(
        "--durability",
        choices=("process", "power"),
        default="process",
        help="process: survives kill -9 (default); power: fsync every commit, survives power loss",
    )
    auth = p.add_mutually_exclusive_group()
    auth.add_argument("--auth-token-env", metavar="VAR", help="require this env var's bearer token")
    auth.add_argument("--auth-token-file", type=Path, help="require the bearer token in this file")
    p.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="listen on a non-loopback address without a token or client certificates",
    )
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (enables TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--tls-client-ca", type=Path, help="PEM CA bundle: require client certs (mTLS)")
    p.add_argument(
        "--grace",
        type=grace_seconds,
        default=5.0,
        help="seconds active runs get at shutdown (0 to 86400)",
    )
    p.add_argument(
        "--accept-lost-seqs",
        action="store_true",
        help="start although the store's log lost committed events (a damaged WAL); the lost "
        "seqs are skipped, never reused",
    )
    p.add_argument("--log-level", default="INFO", type=log_level, help=", ".join(LOG_LEVELS))
    p.add_argument(
        "--event-loop",
        choices=EVENT_LOOPS,
        default=DEFAULT_EVENT_LOOP,
        help="uvloop (default: the loop's own work in C, ~15%% fewer instructions per run) or "
        "asyncio (Python's own loop)",
    )
    _ops_options(p)


def _ops_options(p: argparse.ArgumentParser) -> None:
    """Operators' flags: metrics, health port, log format, access log (README "Operations")."""
    p.add_argument(
        "--metrics-listen",
        metavar="HOST:PORT",
        type=listen_address,
        help="serve Prometheus metrics at http://HOST:PORT/metrics (no auth: bind privately)",
    )
    p.add_argument(
        "--health-listen",
        metavar="HOST:PORT",
        type=listen_address,
        help="a plaintext port serving only grpc.health.v1 (for probes when --tls-cert is on)",
    )
    p.add_argument("--log-format", choices=LOG_FORMATS, default="text")
    p.add_argument(
        "--access-log",
        choices=ACCESS_LOG_MODES,
        default="all",
        help="one line per RPC: all (INFO; errors at WARNING), errors only, or off",
    )


# What a client can send in the authorization metadata: visible ASCII, no space.
_BEARER = re.compile(r"[\x21-\x7e]+")


def _token(args: argparse.Namespace) -> str | None:
    """The bearer token, stripped of surrounding whitespace from either source alike (a
    Kubernetes Secret made from a file often ends with a newline: kept, no client could ever
    send it, and every call was UNAUTHENTICATED). One no client can send is refused at start,
    without showing it."""
    token = _token_text(args)
    if token is not None and _BEARER.fullmatch(token) is None:
        where = f"${args.auth_token_env}" if args.auth_token_env else str(args.auth_token_file)
        raise StartupError(
            f"the token in {where} has a space, a control or a non-ASCII character, which a "
            "client cannot send in gRPC metadata (the token is not shown)"
        )
    return token


# A bearer token travels in a gRPC header (8 KiB at most by default): a file larger than this
# is not a token file.
MAX_TOKEN_FILE_BYTES = 64 * 1024


def _token_text(args: argparse.Namespace) -> str | None:
    if args.auth_token_env:
        token: str = os.environ.get(args.auth_token_env, "").strip()
        if not token:
            raise StartupError(f"--auth-token-env: ${args.auth_token_env} is empty or unset")
        return token
    if args.auth_token_file:
        check_secret_mode("--auth-token-file", args.auth_token_file)
        try:
            with args.auth_token_file.open("rb") as f:
                raw = f.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as exc:
            raise StartupError(
                f"--auth-token-file: {exc.strerror}: {args.auth_token_file}"
            ) from None
        # before: a file that was not UTF-8 stopped serve with a traceback (exit 1), and a huge
        # one (a wrong path) was read whole; now each is one line and exit 2, as every mistake
        if len(raw) > MAX_TOKEN_FILE_BYTES:
            raise StartupError(
                f"--auth-token-file: {args.auth_token_file} is larger than "
                f"{MAX_TOKEN_FILE_BYTES} bytes: not a token file"
            )
        try:
            token = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            raise StartupError(
                f"--auth-token-file: {args.auth_token_file} is not UTF-8 text "
                "(the token is not shown)"
            ) from None
        if not token:
            raise StartupError(f"--auth-token-file: {args.auth_token_file} is empty")
        return token
    return None


async def serve(args: argparse.Namespace) -> int:
    # grpc is imported here, not at module level: only `serve` needs the network stack.
    from runtime_server.grpc import OpsListenError, OpsOptions, TLSFiles, start_server

    try:
        config = load_config(args.config) if args.config else default_config()
        limits = limits_from(config.limits)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        token = _token(args)
        tls_paths = check_tls(args.tls_cert, args.tls_key, args.tls_client_ca)
        check_exposure(
            args.listen,
            authenticated=token is not None or bool(tls_paths and tls_paths.client_ca),
            allow_unauthenticated=args.allow_unauthenticated,
        )
        check_bindable(args.listen)
    except StartupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if token:
        _redact_in_logs(token)
    tls = TLSFiles(tls_paths.cert, tls_paths.key, tls_paths.client_ca) if tls_paths else None
    store: Store
    where = "memory (nothing persists)"
    if args.store == "sqlite":
        path = args.data_dir / "runtime.sqlite3"
        store = SqliteStore(
            path,
            durability=args.durability,
            retention_events=limits.event_retention_events,
            retention_seconds=limits.event_retention_seconds,
            accept_seq_loss=args.accept_lost_seqs,
            max_write_backlog=max(1, limits.store_write_backlog_events),
        )
        where = f"sqlite {path.resolve()} (durability {args.durability})"
    else:
        store = MemoryStore(
            retention_events=limits.event_retention_events,
            retention_seconds=limits.event_retention_seconds,
            # as the Runtime's default memory store: the log may take half the memory budget
            retention_bytes=max(1, limits.max_memory_bytes // 2),
        )
    # No workspace may overlap the runtime's own data directory or its config file.
    reserved = [p for p in (args.data_dir if args.store == "sqlite" else None, args.config) if p]
    policy = config.policy.with_reserved(*reserved)
    runtime = Runtime(store=store, config=config, limits=limits, policy=policy)
    try:
        ops = OpsOptions(args.metrics_listen, args.health_listen, args.access_log)
        server = await start_server(runtime, args.listen, auth_token=token, tls=tls, ops=ops)
    except StoreOpenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except StoreFailure as exc:  # the store opened but could not commit the start-up recovery
        with contextlib.suppress(Exception):
            await runtime.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OpsListenError as exc:  # --metrics-listen / --health-listen (named in the message)
        print(f"error: {exc}", file=sys.stderr)
        await runtime.close()
        return 2
    except OSError as exc:  # the address: in use, or not one of this host's
        print(f"error: --listen: {exc}", file=sys.stderr)
        await runtime.close()
        return 2
    # What is loaded by now (modules, config, what recovery read back) lives as long as the
    # process: freeze it out of the garbage collector's generations, so that no full collection
    # walks it again (~40,000 objects for a fresh server, far more after recovering many workers).
    # Frozen objects are still freed when their last reference goes; only a reference cycle
    # among them is never collected, which bounds any such leak by what was loaded at start.
    gc.collect()
    gc.freeze()
    host = args.listen.rsplit(":", 1)[0]
    print(
        f"worker-runtime serving on {host}:{server.port}\n"
        f"  runtime_id {runtime.runtime_id}\n"
        f"  store      {where}\n"
        f"  profiles   {', '.join(sorted(config.profiles))}\n"
        f"  auth       {'bearer token' if token else 'none'}; "
        f"tls {tls_paths.mode if tls_paths else 'off'}\n"
        f"  event loop {running_loop_name()}",
        flush=True,
    )
    _ops_banner(args, server.metrics_port, server.health_port)
    for handler in logging.getLogger().handlers:
        handler.flush()  # JSON lines held until the runtime_id was known (logformat)
    for name in sorted({p.local_model for p in config.providers.values() if p.local_model}):
        why = engine.local_model_unavailable(name)
        state = "starts on first use" if why is None else f"UNAVAILABLE: {why}"
        print(f"  local      {name} ({state})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    # From here on a repeated SIGTERM (an impatient supervisor, a script sending it twice) must
    # not kill the process half-way through its ordered shutdown, nor after the loop has closed
    # and restored the default action: the shutdown is already bounded by --grace.
    loop.remove_signal_handler(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print("shutting down: draining", flush=True)
    try:
        await server.stop(args.grace)
    except RuntimeCloseError as exc:  # every resource was released; some releases failed
        for failure in exc.exceptions:
            print(f"error during shutdown: {failure}", file=sys.stderr)
        return 1
    print("stopped", flush=True)
    return 0


class _TokenFilter(logging.Filter):
    """Replaces the runtime's own bearer token (whole, and its JSON, repr and percent-encoded
    forms) in every record. Only whole forms (``Redactor.quick``, ~0.3 us a line): the fragment
    scan of the provider keys' filter costs ~19 us per access-log line, too much for every RPC."""

    def __init__(self, token: str) -> None:
        super().__init__()
        self._redact = engine.Redactor([token])

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it to logging to report
            return True
        clean = self._redact.quick(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self._redact.quick(record.exc_text)
        if record.stack_info:
            record.stack_info = self._redact.quick(record.stack_info)
        return True


def _redact_in_logs(token: str) -> None:
    """Keep the runtime's own bearer token out of every log line, as the provider keys are: a
    caller that pastes it into a request field (a profile name, a request id) would otherwise
    see it written to the access log, echoed in the error's message."""
    guard = _TokenFilter(token)
    for handler in logging.getLogger().handlers:
        handler.addFilter(guard)


def _ops_banner(args: argparse.Namespace, metrics_port: int, health_port: int) -> None:
    if args.metrics_listen:
        host = args.metrics_listen.rsplit(":", 1)[0]
        print(f"  metrics    http://{host}:{metrics_port}/metrics", flush=True)
    if args.health_listen:
        host = args.health_listen.rsplit(":", 1)[0]
        print(f"  health     {host}:{health_port} (plaintext, grpc.health.v1 only)", flush=True)


def _serve_main(args: argparse.Namespace) -> int:
    handlers = configure(args.log_level, args.log_format)
    # Every record any logger emits is redacted against the live provider credentials.
    engine.install_log_redaction(handlers=handlers)
    pin_mmap_threshold()  # freed large messages go back to the OS (see _malloc)
    with (
        contextlib.suppress(KeyboardInterrupt),
        asyncio.Runner(loop_factory=loop_factory(args.event_loop)) as runner,
    ):
        return runner.run(serve(args))
    return 130


def main(argv: list[str] | None = None) -> int:
    """One parser for every command: ``serve`` is added here to the client's command set
    (runtime_client.cli), so ``worker-runtime --help`` lists it beside the client commands."""
    from runtime_client.cli import main as client_main

    return client_main(sys.argv[1:] if argv is None else argv, extra=_add_serve)


if __name__ == "__main__":
    sys.exit(main())
