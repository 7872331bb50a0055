"""``worker-backend serve --config backend.toml [--listen HOST:PORT] [--data-dir DIR]
[--bundles-dir DIR] [--allow-unauthenticated]``;
``worker-backend cluster --runtimes N --base-dir DIR`` (runtimes and the Backend: backend.cluster).

Prints ``worker-backend serving on http://HOST:PORT`` once the port is bound (tests and scripts
wait for that line; with port 0 it names the port chosen). SIGINT/SIGTERM shut down gracefully.

Before binding, ``serve`` refuses (exit 2, ``error: ...`` on stderr) a config the Backend cannot
run with: an unreadable or mismatched TLS file of a remote runtime, and an open console on a
non-loopback address (no ``token_env``, no ``allow_unauthenticated``; see
``backend.config.exposure_error``). The Backend itself (its embedded runtime's store) is started
before the banner too, so a data directory another process holds, or a store that is damaged or
from a newer version, is one line naming the file and exit 2, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import socket
import sys
from pathlib import Path

import uvicorn

from backend import cluster
from backend.app import create_app
from backend.config import (
    BackendConfigError,
    check_bundles_dir,
    exposure_error,
    listen_error,
    load_config,
)
from backend.http_limits import HttpLimits, bounded_protocol
from backend.logsetup import BackendRedactor, access_log, configure_logging
from backend.service import Backend, build_registry
from runtime_server.logformat import LOG_FORMATS
from runtime_server.store import StoreOpenError

__all__ = ["main", "parser"]

SHUTDOWN_GRACE_S = 10


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="worker-backend", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="run the Backend and its web console")
    s.add_argument("--config", type=Path, default=None, help="backend TOML file (optional)")
    s.add_argument("--listen", default=None, help="HOST:PORT (default from config: 127.0.0.1:8080)")
    s.add_argument("--data-dir", type=Path, default=None, help="the embedded runtime's data")
    s.add_argument(
        "--bundles-dir", type=Path, default=None, help="config bundles to push (one *.toml each)"
    )
    s.add_argument(
        "--allow-unauthenticated",
        action="store_true",
        help="serve the console with no login token on a non-loopback address (config: "
        "allow_unauthenticated = true); without it, set token_env or listen on loopback",
    )
    s.add_argument("--log-level", default="warning")
    s.add_argument(
        "--log-format",
        choices=LOG_FORMATS,
        default="text",
        help="text (one escaped line per record) or json (one object per line); uvicorn's "
        "lines too (backend.logsetup)",
    )
    cluster.add_parser(sub)
    return p


async def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except BackendConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    redactor = getattr(args, "redactor", None)
    if isinstance(redactor, BackendRedactor):  # the tokens the config names never reach a line
        redactor.add(t for t in (config.token, *(r.token for r in config.runtimes)) if t)
    if args.listen:
        bad_listen = listen_error(args.listen)
        if bad_listen is not None:  # before the exposure check: "nohost" is no address at all
            print(f"error: --listen: {bad_listen}", file=sys.stderr)
            return 2
        config = dataclasses.replace(config, listen=args.listen)
    if args.data_dir:
        config = dataclasses.replace(config, data_dir=args.data_dir)
    if args.bundles_dir:
        config = dataclasses.replace(config, bundles_dir=args.bundles_dir)
    try:
        check_bundles_dir(config.bundles_dir)
    except BackendConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.allow_unauthenticated:
        config = dataclasses.replace(config, allow_unauthenticated=True)
    refused = exposure_error(config)
    if refused is not None:
        print(f"error: {refused}", file=sys.stderr)
        return 2
    try:
        build_registry(config)  # reads and checks each remote runtime's TLS files; no connection
    except BackendConfigError as exc:
        print(f"error: {args.config}: {exc}", file=sys.stderr)
        return 2
    host, _, port = config.listen.rpartition(":")
    host = host.strip("[]")
    try:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, int(port)))
    except (OSError, ValueError) as exc:
        print(f"error: cannot listen on {config.listen}: {exc}", file=sys.stderr)
        return 2
    bound = sock.getsockname()[1]
    service = Backend(config)
    try:
        await service.start()
    except (StoreOpenError, OSError, BackendConfigError) as exc:
        sock.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    app = create_app(config, backend=service)
    limits = HttpLimits(
        max_connections=config.max_connections,
        max_connections_per_client=config.max_connections_per_client,
        request_timeout_s=config.request_timeout_s,
        send_timeout_s=config.send_timeout_s,
        trusted_proxies=config.trusted_proxies,
    )
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            log_level=args.log_level,
            # no handlers of uvicorn's own: its lines go through the Backend's (backend.logsetup)
            log_config=None,
            access_log=access_log(args.log_level),
            lifespan="on",
            # X-Forwarded-For/-Proto only from the configured proxies; by default from nobody
            # (uvicorn's default believed 127.0.0.1: any local process could pose as any number
            # of clients and get around the per-address caps)
            proxy_headers=bool(config.trusted_proxies),
            forwarded_allow_ips=list(config.trusted_proxies) or None,
            http=bounded_protocol(limits),  # slowloris, connection count, stalled readers
            # requests still in flight when SIGTERM comes get this long, then are cancelled
            # (event streams are cut at once: backend.http_limits)
            timeout_graceful_shutdown=SHUTDOWN_GRACE_S,
        )
    )

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.05)
        shown = f"[{host}]" if ":" in host else host
        print(f"worker-backend serving on http://{shown}:{bound}", flush=True)

    watcher = asyncio.create_task(announce())
    try:
        await server.serve(sockets=[sock])
    finally:
        watcher.cancel()
    return 0 if server.started else 1


def parser() -> argparse.ArgumentParser:
    """The command line (tests check the Kubernetes manifests' arguments against it)."""
    return _parser()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "cluster":
        return cluster.run_cluster(args)
    # one line per record (text) or one object (json), uvicorn's included: a remote runtime's
    # text or a request's path cannot forge a line of the Backend's log; secrets redacted
    args.redactor = configure_logging(args.log_level, args.log_format)
    return asyncio.run(_serve(args))


if __name__ == "__main__":
    raise SystemExit(main())
