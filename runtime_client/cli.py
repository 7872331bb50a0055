"""The client commands of the ``worker-runtime`` console script (``serve`` lives in
``runtime_server.cli``, which hands every other command to :func:`main`).

Output is for people by default and JSON with ``--json``. Commands that create something print
its id alone on stdout, so ``W=$(worker-runtime workers create)`` works. Exit codes: 0 ok,
1 an RPC failed (``error: REASON: message`` on stderr; with ``--json`` one JSON object
``{"error": {reason, code, message, metadata}}``) or a followed run did not complete,
2 usage error (a bad flag or file: one line), 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from runtime_client._cli_parser import TOKEN_ENV, Command, _parser
from runtime_client._cli_terminal import TerminalText, visible_controls
from runtime_client._client import RuntimeClient
from runtime_client._retry import RetryPolicy
from runtime_client.errors import RuntimeServiceError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, extra: Callable[[Any], None] | None = None) -> int:
    """Run one command. ``extra(subparsers)`` adds non-client commands (``serve``); such a
    command sets the default ``direct`` to a function of the parsed arguments returning the exit
    code, run instead of a client command."""
    parser = _parser(extra)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for usage errors, 0 for --help
        return exc.code if isinstance(exc.code, int) else 2
    direct: Callable[[argparse.Namespace], int] | None = getattr(args, "direct", None)
    if direct is not None:
        return direct(args)
    command: Command | None = getattr(args, "func", None)
    if command is None:
        getattr(args, "usage_parser", parser).print_usage(sys.stderr)
        print("error: a command is required", file=sys.stderr)
        return 2
    try:
        return asyncio.run(_run(command, args))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # the reader went away (``| head``): not an error; keep Python from complaining at exit
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


# A person at a terminal wants a prompt answer: ride out a restart blip (about 2 s), then say
# the server is unavailable, instead of the library default's 15 s budget.
CLI_RETRY = RetryPolicy(max_attempts=4, budget_s=2.0)


async def _run(command: Command, args: argparse.Namespace) -> int:
    token = os.environ.get(args.token_env) or None
    if token is None and args.token_env != TOKEN_ENV:
        # a variable named on purpose and unset (a typo, a shell that did not export it): before,
        # every call went out without a token and the mistake read as a server refusing it
        text = f"--token-env {args.token_env}: the variable is not set"
        _error(args, "USAGE", text, code="", metadata={})
        return 2
    try:
        # TLS files are read and checked here: a bad one is a usage error, never a grpc abort
        client = RuntimeClient(
            args.target,
            token=token,
            tls=bool(args.tls),
            ca_file=args.ca_file,
            cert_file=args.cert_file,
            key_file=args.key_file,
            retry=CLI_RETRY,
        )
    except (OSError, ValueError) as exc:
        text = f"{exc.strerror}: {exc.filename}" if isinstance(exc, OSError) else str(exc)
        for name in ("ca_file", "cert_file", "key_file"):  # the client's names → the flags
            text = text.replace(name, "--" + name.replace("_", "-"))
        _error(args, "USAGE", text, code="", metadata={})
        return 2
    try:
        async with client, contextlib.AsyncExitStack() as human:
            if not args.json:  # what people read: no control character reaches the terminal
                human.enter_context(contextlib.redirect_stdout(TerminalText(sys.stdout)))
                human.enter_context(contextlib.redirect_stderr(TerminalText(sys.stderr)))
            return await command(client, args)
    except RuntimeServiceError as exc:
        sys.stdout.flush()
        _error(args, exc.reason, exc.message, code=exc.code.name, metadata=dict(exc.metadata))
        return 1


def _error(
    args: argparse.Namespace, reason: str, message: str, *, code: str, metadata: dict[str, str]
) -> None:
    """One line on stderr: ``error: REASON: message``, or with ``--json`` one JSON object
    ``{"error": {"reason", "code", "message", "metadata"}}`` (the ErrorInfo, for scripts)."""
    if getattr(args, "json", False):
        body = {"reason": reason, "code": code, "message": message, "metadata": metadata}
        print(json.dumps({"error": body}, ensure_ascii=False), file=sys.stderr)
    elif code:
        print(visible_controls(f"error: {reason}: {message}"), file=sys.stderr)
    else:  # not from the server: no reason to show
        print(visible_controls(f"error: {message}"), file=sys.stderr)
