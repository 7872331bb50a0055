"""The argument parser of the ``worker-runtime`` client commands."""

from __future__ import annotations

import argparse
import os
from collections.abc import Awaitable, Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

from runtime_client._cli_bundles import add_bundle_commands, bundle_ref
from runtime_client._cli_commands import (
    _cmd_cancel,
    _cmd_claims,
    _cmd_diagnostics,
    _cmd_events,
    _cmd_health,
    _cmd_profiles,
    _cmd_run,
    _cmd_runtime,
    _cmd_send,
    _cmd_transcript,
    _cmd_usage,
    _cmd_workers_create,
    _cmd_workers_delete,
    _cmd_workers_get,
    _cmd_workers_list,
    _cmd_workers_stop,
)
from runtime_client._client import RuntimeClient
from runtime_client._models import BusyPolicy

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "WORKER_RUNTIME_TARGET"
TOKEN_ENV = "WORKER_RUNTIME_TOKEN"

Command = Callable[[RuntimeClient, argparse.Namespace], Awaitable[int]]


# --- argument parsing -------------------------------------------------------------------------


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def _count(text: str) -> int:
    """``--limit``: a whole number >= 0 (before, ``-1`` printed nothing and exited 0)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


def _seq(text: str) -> int:
    """``--after``: a seq, 0 to 2**64-1 (before, ``-5`` ended in a protobuf traceback)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seq (a whole number), got {text!r}") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"expected a seq from 0 to 2**64-1, got {text!r}")
    return value


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The global options, accepted before or after the command. On subcommands their defaults
    are SUPPRESS, so a value given before the command is not reset by the subparser."""

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    g = parser.add_argument_group("connection and output")
    g.add_argument(
        "--target",
        default=default(os.environ.get(TARGET_ENV) or DEFAULT_TARGET),
        help=f"host:port of the Runtime (env {TARGET_ENV}; default {DEFAULT_TARGET})",
    )
    g.add_argument(
        "--token-env",
        metavar="VAR",
        default=default(TOKEN_ENV),
        help=f"read the bearer token from this environment variable (default {TOKEN_ENV})",
    )
    g.add_argument("--json", action="store_true", default=default(False), help="JSON output")
    g.add_argument("--tls", action="store_true", default=default(False), help="use TLS")
    g.add_argument("--ca-file", default=default(None), help="CA bundle (PEM); implies --tls")
    g.add_argument("--cert-file", default=default(None), help="client certificate for mTLS")
    g.add_argument("--key-file", default=default(None), help="client key for mTLS")


class _Parser(argparse.ArgumentParser):
    """Usage errors are one line (``worker-runtime send: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _version() -> str:
    try:
        return version("worker-runtime")
    except PackageNotFoundError:  # a source tree without an install
        return "0.0.0+source"


def _parser(
    extra: Callable[[Any], None] | None = None,
) -> argparse.ArgumentParser:
    """The one parser of ``worker-runtime``; ``extra(subparsers)`` adds commands that are not
    client commands (``serve``, added by runtime_server.cli: the client never imports the
    server), listed in the same ``--help``."""
    parser = _Parser(
        prog="worker-runtime",
        description="Serve a Worker Runtime (serve) or drive one over gRPC (every other command).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    _global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")
    if extra is not None:
        extra(sub)

    def command(group: Any, name: str, func: Command, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help, description=help
        )
        p.set_defaults(func=func)
        return p

    p = command(sub, "health", _cmd_health, "health check (exit 0 only when SERVING)")
    p.add_argument("--service", default="", help="one service's status (default: the server's)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds (default 5)")
    command(sub, "runtime", _cmd_runtime, "runtime summary and limits")
    command(sub, "profiles", _cmd_profiles, "list profiles")
    p = command(sub, "claims", _cmd_claims, "workspace claims of live workers")
    p.add_argument("--worker", default="", help="only this worker's claims")
    p = command(sub, "diagnostics", _cmd_diagnostics, "recent diagnostics, newest first")
    p.add_argument("--limit", type=_count, default=50, help="at most this many (default 50)")

    workers = sub.add_parser("workers", help="list, create, get, stop, delete workers")
    wsub = workers.add_subparsers(title="workers commands", metavar="COMMAND")
    workers.set_defaults(func=None, usage_parser=workers)
    p = command(wsub, "list", _cmd_workers_list, "list workers")
    p.add_argument("--state", choices=["idle", "running", "stopped"])
    p.add_argument("--label", type=_label, action="append", default=[], metavar="KEY=VALUE")
    p = command(wsub, "create", _cmd_workers_create, "create a worker; prints its id")
    p.add_argument("--profile", default="", help="profile name (default: echo)")
    p.add_argument("--name", default="", help="display name")
    p.add_argument("--id", default="", dest="worker_id", help="choose the worker id (a UUID)")
    p.add_argument("--label", type=_label, action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--request-id", default="", help="idempotency key")
    p.add_argument("--input", default="", help="first input, sent right away")
    p.add_argument("--workspace", default="", metavar="DIR", help="workspace root (read-only)")
    p.add_argument("--rw", action="store_true", help="make the workspace root read-write")
    p.add_argument(
        "--mount", action="append", default=[], metavar="DIR[:rw]", help="extra mount (repeatable)"
    )
    p.add_argument(
        "--capability", action="append", default=[], metavar="CAP",
        help="fs.read, fs.write or clock (repeatable; none = the profile's tools)",
    )  # fmt: skip
    p.add_argument(
        "--bundle", type=bundle_ref, default=None, metavar="ID@DIGEST",
        help="take --profile from this config bundle (see bundles put)",
    )  # fmt: skip
    p = command(wsub, "get", _cmd_workers_get, "show a worker")
    p.add_argument("worker_id", metavar="ID")
    p = command(wsub, "stop", _cmd_workers_stop, "stop a worker (cancels its run)")
    p.add_argument("worker_id", metavar="ID")
    p.add_argument("--reason", default="")
    p = command(wsub, "delete", _cmd_workers_delete, "delete a worker and its data")
    p.add_argument("worker_id", metavar="ID")

    add_bundle_commands(sub, command)  # bundles put/list/get/delete (_cli_bundles)

    p = command(sub, "send", _cmd_send, "send input to a worker; prints the run id")
    p.add_argument("worker_id", metavar="WORKER")
    p.add_argument("text", metavar="TEXT")
    p.add_argument(
        "--follow", "-f", action="store_true", help="stream the answer; exit 1 unless completed"
    )
    p.add_argument("--policy", choices=[b.value.lower() for b in BusyPolicy], default="reject")
    p.add_argument("--request-id", default="", help="idempotency key")
    p = command(sub, "cancel", _cmd_cancel, "cancel a run")
    p.add_argument("run_id", metavar="RUN")
    p = command(sub, "run", _cmd_run, "show a run")
    p.add_argument("run_id", metavar="RUN")
    p = command(sub, "events", _cmd_events, "list or follow events, one line each")
    p.add_argument("--worker", default="", help="only this worker's events")
    p.add_argument("--after", type=_seq, default=None, metavar="SEQ", help="events after SEQ")
    p.add_argument(
        "--follow", "-f", action="store_true", help="keep streaming (from now unless --after)"
    )
    p.add_argument("--limit", type=_count, default=None, metavar="N", help="stop after N events")
    p = command(sub, "transcript", _cmd_transcript, "a worker's committed history")
    p.add_argument("worker_id", metavar="WORKER")
    p = command(sub, "usage", _cmd_usage, "token usage of a worker or the whole runtime")
    p.add_argument("worker_id", metavar="WORKER", nargs="?", default="")
    return parser
