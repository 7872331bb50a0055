"""``make bench`` / ``python -m bench``: baseline vs product, in one run, on this machine.

Sections (``--only NAME`` runs one):

* ``grpc``   (issue 2) the Runtime over gRPC vs a bare grpc.aio echo;
* ``store``  (issue 4) the SQLite store: durable events/s, publish latency, runs/s vs memory,
  restart with 1,000,000 events;
* ``context`` (issue 14) runs/s on a worker whose history holds 1,000,000 events vs an empty one;
* ``engine`` (issue 3) parsing recorded provider streams vs the official SDKs; the engine's
  overhead on a llama.cpp turn;
* ``peer``   (issue 15) the peer comparison's workload: 10-word echo runs streamed at c=1 and
  c=16, batched and per-event, memory and SQLite, vs bare grpc.aio; server CPU per run; the
  shape baseline (``bench.shape``: the product's RPC shape with no logic) gives the limit;
* ``registry`` (issue 11) RuntimeRegistry's overhead on a remote and an embedded run, and
  list_workers over 3 runtimes x 10,000 workers;
* ``backend`` (issue 12) SSE events/s through the Backend vs subscribing to the runtime
  directly; the Backend's RSS with 256 open console streams.

Every figure is the median of >= 3 repetitions; baseline and product are measured back to back
inside each repetition (interleaved), so noise on this shared machine hits both alike. Ratios
are medians of the per-repetition ratios. Rows measured against the shape baseline too add three
columns: ``shape`` (its figure), ``limit`` (shape / baseline: what a runtime with no cost of its
own would reach) and ``of limit`` (product / shape). ``--quick`` shortens every measurement.
Results go to stdout (a table at the end) and to ``bench/results.json`` (not committed).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench._common import Row, say, serve_event_loop, table

SECTIONS = ("grpc", "store", "engine", "peer", "registry", "backend", "context")


def _section(name: str) -> Callable[[bool], Awaitable[list[Row]]]:
    if name == "grpc":
        from bench import _grpc

        return _grpc.run
    if name == "store":
        from bench import _store

        return _store.run
    if name == "context":
        from bench import _context

        return _context.run
    if name == "backend":
        from bench import _backend

        return _backend.run
    if name == "peer":
        from bench import _peer

        return _peer.run
    if name == "registry":
        from bench import _registry

        return _registry.run
    from bench import _engine

    return _engine.run


async def main_async(args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    for name in SECTIONS:
        if args.only and name != args.only:
            continue
        say(f"== {name} ==")
        start = time.perf_counter()
        try:
            rows.extend(await _section(name)(args.quick))
        except Exception as exc:  # one broken section must not hide the others
            say(f"  [{name}] FAILED: {type(exc).__name__}: {exc}")
            rows.append(Row(name, f"section failed ({type(exc).__name__})", "", kind="info"))
        say(f"   ({name}: {time.perf_counter() - start:.0f} s)")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short run (smaller counts)")
    parser.add_argument("--only", choices=SECTIONS, help="run one section")
    parser.add_argument(
        "--json",
        type=Path,
        default=Path(__file__).resolve().parent / "results.json",
        help="where to write machine-readable results (default bench/results.json)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    loop = serve_event_loop()
    say(f"event loop: {loop} (serve, and the bare and shape baseline servers)")
    rows = asyncio.run(main_async(args))
    say("")
    say(table(rows))
    notes = [f"  {r.section}/{r.name}: {r.note}" for r in rows if r.note]
    if notes:
        say("\nnotes:")
        for line in notes:
            say(line)
    import grpc
    from google.protobuf import __version__ as protobuf_version

    result = {
        "quick": args.quick,
        "only": args.only,
        "python": platform.python_version(),
        "grpcio": grpc.__version__,
        "protobuf": protobuf_version,
        "event_loop": loop,
        "wall_s": round(time.perf_counter() - started, 1),
        "rows": [r.as_json() for r in rows],
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    say(f"\n(event loop {loop}; wall {result['wall_s']} s; results in {args.json})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
