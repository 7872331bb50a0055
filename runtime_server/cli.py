"""``worker-runtime``: ``serve`` runs the server; every other command is a client command
(runtime_client._cli)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
from pathlib import Path

import engine
from runtime_server.runtime import ConfigError, Runtime, default_config, limits_from, load_config
from runtime_server.store import MemoryStore, SqliteStore, Store, StoreOpenError

log = logging.getLogger("runtime_server")

DEFAULT_DATA_DIR = "worker-runtime-data"


def _serve_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worker-runtime serve", description="Run the gRPC server.")
    p.add_argument("--listen", default="127.0.0.1:50051", help="host:port (port 0 = any free port)")
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
    p.add_argument("--tls-cert", type=Path, help="PEM certificate chain (enables TLS)")
    p.add_argument("--tls-key", type=Path, help="PEM private key")
    p.add_argument("--tls-client-ca", type=Path, help="PEM CA bundle: require client certs (mTLS)")
    p.add_argument("--grace", type=float, default=5.0, help="seconds active runs get at shutdown")
    p.add_argument("--log-level", default="INFO")
    return p


def _token(args: argparse.Namespace) -> str | None:
    if args.auth_token_env:
        token: str = os.environ.get(args.auth_token_env, "")
        if not token:
            raise SystemExit(f"error: --auth-token-env: ${args.auth_token_env} is empty or unset")
        return token
    if args.auth_token_file:
        try:
            token = args.auth_token_file.read_text().strip()
        except OSError as exc:
            raise SystemExit(
                f"error: --auth-token-file: {exc.strerror}: {args.auth_token_file}"
            ) from None
        if not token:
            raise SystemExit(f"error: --auth-token-file: {args.auth_token_file} is empty")
        return token
    return None


async def serve(args: argparse.Namespace) -> int:
    # grpc is imported here, not at module level: only `serve` needs the network stack.
    from runtime_server.grpc import TLSFiles, start_server

    try:
        config = load_config(args.config) if args.config else default_config()
        limits = limits_from(config.limits)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    token = _token(args)
    tls = None
    if args.tls_cert or args.tls_key:
        if not (args.tls_cert and args.tls_key):
            print("error: --tls-cert and --tls-key go together", file=sys.stderr)
            return 2
        tls = TLSFiles(args.tls_cert, args.tls_key, args.tls_client_ca)
    store: Store
    where = "memory (nothing persists)"
    if args.store == "sqlite":
        path = args.data_dir / "runtime.sqlite3"
        store = SqliteStore(
            path,
            durability=args.durability,
            retention_events=limits.event_retention_events,
            retention_seconds=limits.event_retention_seconds,
        )
        where = f"sqlite {path.resolve()} (durability {args.durability})"
    else:
        store = MemoryStore(
            retention_events=limits.event_retention_events,
            retention_seconds=limits.event_retention_seconds,
        )
    runtime = Runtime(store=store, config=config, limits=limits)
    try:
        server = await start_server(runtime, args.listen, auth_token=token, tls=tls)
    except StoreOpenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        await runtime.close()
        return 1
    host = args.listen.rsplit(":", 1)[0]
    print(
        f"worker-runtime serving on {host}:{server.port}\n"
        f"  runtime_id {runtime.runtime_id}\n"
        f"  store      {where}\n"
        f"  profiles   {', '.join(sorted(config.profiles))}\n"
        f"  auth       {'bearer token' if token else 'none'}; tls {'on' if tls else 'off'}",
        flush=True,
    )
    for name in sorted({p.local_model for p in config.providers.values() if p.local_model}):
        why = engine.local_model_unavailable(name)
        state = "starts on first use" if why is None else f"UNAVAILABLE: {why}"
        print(f"  local      {name} ({state})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    print("shutting down: draining", flush=True)
    await server.stop(args.grace)
    print("stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "serve":
        args = _serve_parser().parse_args(argv[1:])
        logging.basicConfig(
            level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
        # Every record any logger emits is redacted against the live provider credentials.
        engine.install_log_redaction(handlers=logging.getLogger().handlers)
        with contextlib.suppress(KeyboardInterrupt):
            return asyncio.run(serve(args))
        return 130
    from runtime_client._cli import main as client_main

    return client_main(argv)


if __name__ == "__main__":
    sys.exit(main())
