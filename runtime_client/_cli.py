"""The client commands of the ``worker-runtime`` console script (``serve`` lives in
``runtime_server.cli``, which hands every other command to :func:`main`).

Output is for people by default and JSON with ``--json``. Commands that create something print
its id alone on stdout, so ``W=$(worker-runtime workers create)`` works. Exit codes: 0 ok,
1 an RPC failed (``error: REASON: message`` on stderr) or a followed run did not complete,
2 usage error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from collections.abc import Sequence

import grpc

from runtime_client._cli_parser import Command, _parser
from runtime_client._client import RuntimeClient
from runtime_client.errors import RuntimeClientError

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 for usage errors, 0 for --help
        return exc.code if isinstance(exc.code, int) else 2
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


async def _run(command: Command, args: argparse.Namespace) -> int:
    token = os.environ.get(args.token_env) or None
    try:
        tls = _credentials(args)
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        async with RuntimeClient(args.target, token=token, tls=tls) as client:
            return await command(client, args)
    except RuntimeClientError as exc:
        sys.stdout.flush()
        print(f"error: {exc.reason}: {exc.message}", file=sys.stderr)
        return 1


def _credentials(args: argparse.Namespace) -> bool | grpc.ChannelCredentials:
    if not (args.tls or args.ca_file or args.cert_file):
        return False
    if not (args.ca_file or args.cert_file):
        return True

    def read(path: str | None) -> bytes | None:
        if not path:
            return None
        with open(path, "rb") as f:
            return f.read()

    return grpc.ssl_channel_credentials(
        root_certificates=read(args.ca_file),
        private_key=read(args.key_file),
        certificate_chain=read(args.cert_file),
    )
