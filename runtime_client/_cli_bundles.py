"""The ``worker-runtime bundles`` commands (put, list, get, delete) and the ``--bundle ID@DIGEST``
argument of ``workers create``.

``bundles put FILE`` prints ``ID@DIGEST`` alone, so ``B=$(worker-runtime bundles put team.toml)``
then ``worker-runtime workers create --profile helper --bundle "$B"`` works; the bytes are sent
exactly as the file holds them (the digest is over them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from runtime_client._bundles import ConfigBundle
from runtime_client._cli_render import _block, _print_json, _table, _time
from runtime_client._client import RuntimeClient
from runtime_client._models import ConfigBundleRef


def bundle_ref(text: str) -> ConfigBundleRef:
    """``ID@DIGEST`` (argparse type of ``--bundle``)."""
    bundle_id, sep, digest = text.partition("@")
    if not sep or not bundle_id or not digest:
        raise argparse.ArgumentTypeError(f"expected ID@DIGEST, got {text!r}")
    return ConfigBundleRef(bundle_id, digest)


# What `bundles put` reads of a file at most: far above any bundle (max_bundle_bytes, 256 KiB by
# default), the size of the largest gRPC message a runtime takes by default (4 MiB)
MAX_BUNDLE_FILE_BYTES = 4 * 1024 * 1024


def _annotation(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


def add_bundle_commands(sub: Any, command: Callable[..., argparse.ArgumentParser]) -> None:
    """``bundles put|list|get|delete`` under the parser's subcommands (``command`` adds one)."""
    bundles = sub.add_parser("bundles", help="put, list, get, delete config bundles")
    bsub = bundles.add_subparsers(title="bundles commands", metavar="COMMAND")
    bundles.set_defaults(func=None, usage_parser=bundles)
    p = command(bsub, "put", _cmd_put, "store a config bundle (TOML file); prints ID@DIGEST")
    p.add_argument("file", metavar="FILE", type=Path)
    p.add_argument("--id", default="", dest="bundle_id", help="bundle id (default: file stem)")
    p.add_argument("--expected-digest", default="", metavar="DIGEST", help="refuse other bytes")
    p.add_argument(
        "--annotation", type=_annotation, action="append", default=[], metavar="KEY=VALUE"
    )
    p = command(bsub, "list", _cmd_list, "list config bundles (every version)")
    p.add_argument("--id", default="", dest="bundle_id", help="only this id's versions")
    p = command(bsub, "get", _cmd_get, "show a config bundle")
    p.add_argument("bundle_id", metavar="ID")
    p.add_argument("digest", metavar="DIGEST")
    p.add_argument("--content", action="store_true", help="print the bundle's bytes instead")
    p = command(bsub, "delete", _cmd_delete, "delete a config bundle (not while in use)")
    p.add_argument("bundle_id", metavar="ID")
    p.add_argument("digest", metavar="DIGEST")


async def _cmd_put(client: RuntimeClient, args: argparse.Namespace) -> int:
    try:
        # bounded: a path given by mistake (/dev/zero, a huge log, a pipe that never ends) read
        # whole took all the memory there was
        with args.file.open("rb") as f:
            content = f.read(MAX_BUNDLE_FILE_BYTES + 1)
    except OSError as exc:
        print(f"error: cannot read {args.file}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    if len(content) > MAX_BUNDLE_FILE_BYTES:
        print(
            f"error: {args.file} is larger than {MAX_BUNDLE_FILE_BYTES} bytes: not a config "
            "bundle (a runtime accepts at most its max_bundle_bytes, 256 KiB by default)",
            file=sys.stderr,
        )
        return 2
    put = await client.put_bundle(
        args.bundle_id or args.file.stem,
        content,
        expected_digest=args.expected_digest,
        annotations=dict(args.annotation),
    )
    if args.json:
        _print_json(put)
    else:
        print(f"{put.bundle.id}@{put.bundle.digest}")
        if not put.created:
            print("(already stored: nothing changed)", file=sys.stderr)
    return 0


async def _cmd_list(client: RuntimeClient, args: argparse.Namespace) -> int:
    found: list[ConfigBundle] = []
    token = ""
    while True:
        page = await client.list_bundles(id=args.bundle_id, page_token=token)
        found.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    if args.json:
        _print_json(found)
        return 0
    rows = [
        (
            b.id,
            b.digest,
            str(b.size_bytes),
            ",".join(b.profiles),
            str(b.referencing_worker_count),
            _time(b.created_at),
        )
        for b in found
    ]
    _table(("ID", "DIGEST", "BYTES", "PROFILES", "WORKERS", "CREATED"), rows)
    return 0


async def _cmd_get(client: RuntimeClient, args: argparse.Namespace) -> int:
    got = await client.get_bundle(args.bundle_id, args.digest, include_content=args.content)
    if args.content:
        sys.stdout.buffer.write(got.content)
        sys.stdout.flush()
        return 0
    b = got.bundle
    if args.json:
        _print_json(b)
        return 0
    rows: list[tuple[str, Any]] = [
        ("id", b.id),
        ("digest", b.digest),
        ("media_type", b.media_type),
        ("bytes", b.size_bytes),
        ("created_at", _time(b.created_at)),
        ("profiles", ", ".join(b.profiles) or "-"),
        ("workers", f"{b.referencing_worker_count} " + " ".join(b.referencing_workers)),
    ]
    rows += [(f"annotation {k}", v) for k, v in sorted(b.annotations.items())]
    _block(rows)
    return 0


async def _cmd_delete(client: RuntimeClient, args: argparse.Namespace) -> int:
    await client.delete_bundle(args.bundle_id, args.digest)
    return 0
