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
import dataclasses
import enum
import json
import os
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc

from runtime_client._client import RuntimeClient
from runtime_client._models import (
    BusyPolicy,
    Diagnostic,
    Event,
    InputCommitted,
    MessageCommitted,
    Mount,
    MountMode,
    PartialDiscarded,
    ReasoningDelta,
    Run,
    RunFinished,
    RunQueued,
    RunStarted,
    RunState,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    TranscriptEntry,
    Usage,
    UsageReported,
    Worker,
    WorkerCreated,
    WorkerState,
    WorkerStateChanged,
    WorkerStopped,
    Workspace,
    WorkspaceClaim,
)
from runtime_client.errors import RuntimeClientError

__all__ = ["main"]

DEFAULT_TARGET = "127.0.0.1:50051"
TARGET_ENV = "WORKER_RUNTIME_TARGET"
TOKEN_ENV = "WORKER_RUNTIME_TOKEN"

Command = Callable[[RuntimeClient, argparse.Namespace], Awaitable[int]]


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


# --- argument parsing -------------------------------------------------------------------------


def _label(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="worker-runtime", description="Drive a Worker Runtime over gRPC."
    )
    _global_options(parser, suppress=False)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(group: Any, name: str, func: Command, help: str) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help, description=help
        )
        p.set_defaults(func=func)
        return p

    command(sub, "runtime", _cmd_runtime, "runtime summary and limits")
    command(sub, "profiles", _cmd_profiles, "list profiles")
    p = command(sub, "claims", _cmd_claims, "workspace claims of live workers")
    p.add_argument("--worker", default="", help="only this worker's claims")
    p = command(sub, "diagnostics", _cmd_diagnostics, "recent diagnostics, newest first")
    p.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")

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
    p = command(wsub, "get", _cmd_workers_get, "show a worker")
    p.add_argument("worker_id", metavar="ID")
    p = command(wsub, "stop", _cmd_workers_stop, "stop a worker (cancels its run)")
    p.add_argument("worker_id", metavar="ID")
    p.add_argument("--reason", default="")
    p = command(wsub, "delete", _cmd_workers_delete, "delete a worker and its data")
    p.add_argument("worker_id", metavar="ID")

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
    p.add_argument("--after", type=int, default=None, metavar="SEQ", help="events after SEQ")
    p.add_argument(
        "--follow", "-f", action="store_true", help="keep streaming (from now unless --after)"
    )
    p.add_argument("--limit", type=int, default=None, metavar="N", help="stop after N events")
    p = command(sub, "transcript", _cmd_transcript, "a worker's committed history")
    p.add_argument("worker_id", metavar="WORKER")
    p = command(sub, "usage", _cmd_usage, "token usage of a worker or the whole runtime")
    p.add_argument("worker_id", metavar="WORKER", nargs="?", default="")
    return parser


# --- output helpers ---------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Event):
        d = {"kind": obj.kind}
        d.update(
            (f.name, _jsonable(getattr(obj, f.name)))
            for f in dataclasses.fields(obj)
            if f.name != "raw"  # the wire message: not JSON, and duplicates the rest
        )
        return d
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: _jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, tuple | list):
        return [_jsonable(x) for x in obj]
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    return obj


def _print_json(obj: Any, *, compact: bool = False, file: TextIO | None = None) -> None:
    text = json.dumps(
        _jsonable(obj),
        ensure_ascii=False,
        indent=None if compact else 2,
        separators=(",", ":") if compact else None,
    )
    print(text, file=file or sys.stdout, flush=compact)


def _time(t: float) -> str:
    if not t:
        return "-"
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _short(text: str, limit: int = 60) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _block(rows: Sequence[tuple[str, Any]]) -> None:
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]
    for row in (header, *rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


def _usage_text(u: Usage) -> str:
    text = f"in {u.input_tokens}, out {u.output_tokens}, total {u.total_tokens}"
    if u.cache_read_tokens or u.cache_write_tokens:
        text += f", cache read {u.cache_read_tokens} / write {u.cache_write_tokens}"
    if u.reasoning_tokens:
        text += f", reasoning {u.reasoning_tokens}"
    return text


def _labels_text(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "-"


def _worker_block(w: Worker) -> None:
    rows: list[tuple[str, Any]] = [
        ("worker_id", w.worker_id),
        ("runtime_id", w.runtime_id),
        ("state", w.state),
        ("profile", w.profile),
        ("display_name", w.display_name or "-"),
        ("labels", _labels_text(w.labels)),
        ("active_run_id", w.active_run_id or "-"),
        ("queued_runs", w.queued_runs),
        ("created_at", _time(w.created_at)),
        ("usage", _usage_text(w.usage)),
    ]
    if w.workspace is not None:
        mounts = ", ".join(f"{m.path} ({m.mode.lower()})" for m in w.workspace.mounts)
        root = f"{w.workspace.root} ({w.workspace.root_mode.lower()})"
        rows.append(("workspace", root + (f" [{mounts}]" if mounts else "")))
    rows.append(("capabilities", ", ".join(w.capabilities) or "- (the profile's tools)"))
    rows.append(("tools", ", ".join(w.tools) or "-"))
    if w.config_bundle is not None:
        rows.append(("config_bundle", f"{w.config_bundle.id}@{w.config_bundle.digest}"))
    _block(rows)


def _run_line(r: Run) -> str:
    text = f"run {r.run_id} {r.state}"
    if r.error is not None:
        text += f": {r.error.code}: {r.error.message}"
    return text


def _run_block(r: Run) -> None:
    rows: list[tuple[str, Any]] = [
        ("run_id", r.run_id),
        ("worker_id", r.worker_id),
        ("state", r.state),
        ("created_at", _time(r.created_at)),
        ("started_at", _time(r.started_at)),
        ("finished_at", _time(r.finished_at)),
        ("usage", _usage_text(r.usage)),
        ("stop_reason", r.stop_reason or "-"),
    ]
    if r.error is not None:
        rows.append(("error", f"{r.error.code}: {r.error.message}"))
    _block(rows)


def _entry_summary(e: TranscriptEntry) -> str:
    m = e.message
    parts = [m.role.lower()]
    if m.tool_name:
        parts.append(f"{m.tool_name}{' (error)' if m.is_error else ''}")
    if m.text:
        parts.append(repr(_short(m.text)))
    parts.extend(f"call {c.name}({_short(c.arguments, 40)})" for c in m.tool_calls)
    return " ".join(parts)


def _event_summary(ev: Event) -> str:
    p = ev.payload
    if isinstance(p, TextDelta | ReasoningDelta):
        return repr(_short(p.text))
    if isinstance(p, ToolCallStarted):
        return f"{p.tool_name}({_short(p.arguments, 40)}) id={p.call_id}"
    if isinstance(p, ToolCallFinished):
        flag = " ERROR" if p.is_error else ""
        return f"{p.tool_name}{flag} -> {_short(p.result, 40)!r} id={p.call_id}"
    if isinstance(p, RunQueued | RunStarted | RunFinished):
        return _run_line(p.run)[len("run ") + len(p.run.run_id) + 1 :]
    if isinstance(p, WorkerCreated):
        return f"profile={p.worker.profile} name={p.worker.display_name!r}"
    if isinstance(p, WorkerStateChanged):
        return f"{p.previous} -> {p.state}"
    if isinstance(p, InputCommitted | MessageCommitted):
        return f"#{p.entry.index} {_entry_summary(p.entry)}"
    if isinstance(p, UsageReported):
        return _usage_text(p.usage)
    if isinstance(p, PartialDiscarded | WorkerStopped):
        return p.reason
    if isinstance(p, Diagnostic):
        return f"{p.level} {p.code}: {p.message}"
    return ""


def _event_line(ev: Event) -> str:
    ids = f"w={ev.worker_id or '-'} r={ev.run_id or '-'}"
    return f"{ev.seq} {_time(ev.time)} {ev.kind} {ids} {_event_summary(ev)}".rstrip()


# --- commands ---------------------------------------------------------------------------------


async def _cmd_runtime(client: RuntimeClient, args: argparse.Namespace) -> int:
    info = await client.get_runtime()
    if args.json:
        _print_json(info)
        return 0
    w, caps = info.workers, info.capabilities
    _block(
        [
            ("runtime_id", info.runtime_id),
            ("state", info.state),
            ("version", info.version),
            ("store", info.store_kind),
            ("started_at", _time(info.started_at)),
            (
                "workers",
                f"{w.total} (idle {w.idle}, running {w.running}, stopped {w.stopped})",
            ),
            ("runs", f"active {info.active_runs}, queued {info.queued_runs}"),
            ("events", f"last_seq {info.last_seq}, oldest_seq {info.oldest_seq}"),
            ("subscribers", info.subscribers),
            ("usage", _usage_text(info.usage)),
            ("auth", "required" if info.auth_required else "none"),
            ("providers", ", ".join(caps.provider_kinds) or "-"),
            ("profiles", ", ".join(caps.profiles) or "-"),
            ("features", ", ".join(caps.features) or "-"),
        ]
    )
    print("limits:")
    for f in dataclasses.fields(info.limits):
        print(f"  {f.name:<28} {getattr(info.limits, f.name)}")
    return 0


async def _cmd_profiles(client: RuntimeClient, args: argparse.Namespace) -> int:
    profiles = await client.list_profiles()
    if args.json:
        _print_json(profiles)
        return 0
    _table(
        ("NAME", "KIND", "PROVIDER", "MODEL", "TOOLS", "DESCRIPTION"),
        [
            (
                p.name + (" (builtin)" if p.builtin else ""),
                p.provider_kind,
                p.provider,
                p.model,
                ",".join(p.tools) or "-",
                p.description,
            )
            for p in profiles
        ],
    )
    return 0


async def _cmd_diagnostics(client: RuntimeClient, args: argparse.Namespace) -> int:
    items: list[Diagnostic] = []
    token = ""
    while len(items) < args.limit:
        page = await client.list_diagnostics(page_size=args.limit - len(items), page_token=token)
        items.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    items = items[: args.limit]
    if args.json:
        _print_json(items)
        return 0
    for d in items:
        where = " ".join(
            x for x in (d.worker_id and f"w={d.worker_id}", d.run_id and f"r={d.run_id}") if x
        )
        print(f"{_time(d.time)} {d.level} {d.code}: {d.message} {where}".rstrip())
    return 0


async def _cmd_workers_list(client: RuntimeClient, args: argparse.Namespace) -> int:
    state = WorkerState(args.state.upper()) if args.state else None
    workers = [w async for w in client.iter_workers(state=state, labels=dict(args.label))]
    if args.json:
        _print_json(workers)
        return 0
    _table(
        ("WORKER_ID", "STATE", "PROFILE", "NAME", "ACTIVE_RUN", "LABELS"),
        [
            (
                w.worker_id,
                w.state.value,
                w.profile,
                w.display_name or "-",
                w.active_run_id or "-",
                _labels_text(w.labels),
            )
            for w in workers
        ],
    )
    return 0


async def _cmd_workers_create(client: RuntimeClient, args: argparse.Namespace) -> int:
    created = await client.create_worker(
        worker_id=args.worker_id,
        profile=args.profile,
        display_name=args.name,
        labels=dict(args.label),
        request_id=args.request_id,
        initial_input=args.input,
        workspace=_workspace_arg(args),
        capabilities=args.capability,
    )
    if args.json:
        _print_json(created)
    else:
        print(created.worker.worker_id)
        if created.initial_run is not None:
            print(created.initial_run.run_id)
    return 0


def _workspace_arg(args: argparse.Namespace) -> Workspace | None:
    if not args.workspace:
        if args.mount or args.rw:
            raise SystemExit("error: --mount and --rw need --workspace")
        return None
    mounts = []
    for spec in args.mount:
        path, _, mode = spec.rpartition(":") if spec.endswith((":rw", ":ro")) else (spec, "", "")
        rw = MountMode.READ_WRITE if mode == "rw" else MountMode.READ_ONLY
        mounts.append(Mount(path, rw))
    root_mode = MountMode.READ_WRITE if args.rw else MountMode.READ_ONLY
    return Workspace(args.workspace, tuple(mounts), root_mode)


async def _cmd_claims(client: RuntimeClient, args: argparse.Namespace) -> int:
    claims: list[WorkspaceClaim] = []
    token = ""
    while True:
        page = await client.list_workspace_claims(worker_id=args.worker, page_token=token)
        claims.extend(page.items)
        token = page.next_page_token
        if not token:
            break
    if args.json:
        _print_json(claims)
        return 0
    _table(("WORKER_ID", "MODE", "PATH"), [(c.worker_id, c.mode.value, c.path) for c in claims])
    return 0


async def _cmd_workers_get(client: RuntimeClient, args: argparse.Namespace) -> int:
    worker = await client.get_worker(args.worker_id)
    if args.json:
        _print_json(worker)
    else:
        _worker_block(worker)
    return 0


async def _cmd_workers_stop(client: RuntimeClient, args: argparse.Namespace) -> int:
    worker = await client.stop_worker(args.worker_id, reason=args.reason)
    if args.json:
        _print_json(worker)
    else:
        print(f"worker {worker.worker_id} {worker.state}")
    return 0


async def _cmd_workers_delete(client: RuntimeClient, args: argparse.Namespace) -> int:
    await client.delete_worker(args.worker_id)
    if args.json:
        _print_json({"worker_id": args.worker_id, "deleted": True})
    else:
        print(f"worker {args.worker_id} deleted")
    return 0


async def _cmd_send(client: RuntimeClient, args: argparse.Namespace) -> int:
    accepted = await client.send_input(
        args.worker_id,
        args.text,
        request_id=args.request_id,
        busy_policy=BusyPolicy(args.policy.upper()),
    )
    run_id = accepted.run.run_id
    if not args.follow:
        if args.json:
            _print_json(accepted)
        else:
            print(run_id)
        return 0
    final: Run | None = None
    at_line_start = True
    out, err = sys.stdout, sys.stderr
    # after the RunQueued event: everything this run does, nothing before it
    events = client.subscribe(args.worker_id, after_seq=accepted.seq)
    try:
        async with contextlib.aclosing(events):
            async for ev in events:
                if ev.run_id != run_id:
                    continue
                p = ev.payload
                if args.json:
                    _print_json(ev, compact=True)
                elif isinstance(p, TextDelta):
                    out.write(p.text)
                    out.flush()
                    at_line_start = p.text.endswith("\n")
                elif isinstance(p, ToolCallStarted):
                    print(f"[tool {p.tool_name}({_short(p.arguments, 60)})]", file=err)
                elif isinstance(p, ToolCallFinished):
                    flag = " error" if p.is_error else ""
                    print(f"[tool {p.tool_name}{flag}: {_short(p.result, 60)!r}]", file=err)
                elif isinstance(p, PartialDiscarded):
                    # what was printed cannot be taken back; say that it is being redone
                    print(f"\n[provider stream retried: {p.reason}]", file=err)
                if isinstance(p, RunFinished):
                    final = p.run
                    break
    finally:
        if not args.json and not at_line_start:
            out.write("\n")
            out.flush()
    if final is None:  # the stream ended without RunFinished (worker deleted)
        final = await client.get_run(run_id)
    print(_run_line(final), file=err)
    return 0 if final.state is RunState.COMPLETED else 1


async def _cmd_cancel(client: RuntimeClient, args: argparse.Namespace) -> int:
    run = await client.cancel_run(args.run_id)
    if args.json:
        _print_json(run)
    else:
        print(_run_line(run))
    return 0


async def _cmd_run(client: RuntimeClient, args: argparse.Namespace) -> int:
    run = await client.get_run(args.run_id)
    if args.json:
        _print_json(run)
    else:
        _run_block(run)
    return 0


async def _cmd_events(client: RuntimeClient, args: argparse.Namespace) -> int:
    limit: int | None = args.limit
    if limit is not None and limit <= 0:
        return 0

    def emit(ev: Event) -> None:
        if args.json:
            _print_json(ev, compact=True)
        else:
            print(_event_line(ev), flush=args.follow)

    count = 0
    if args.follow:
        events = client.subscribe(
            args.worker,
            after_seq=args.after or 0,
            from_now=args.after is None,
        )
        async with contextlib.aclosing(events):
            async for ev in events:
                emit(ev)
                count += 1
                if limit is not None and count >= limit:
                    break
        return 0
    cursor = args.after or 0
    while limit is None or count < limit:
        want = 0 if limit is None else limit - count
        page = await client.list_events(after_seq=cursor, worker_id=args.worker, page_size=want)
        for ev in page.events[: None if limit is None else limit - count]:
            emit(ev)
            count += 1
        if not page.events or page.next_after_seq >= page.last_seq:
            break
        cursor = page.next_after_seq
    return 0


async def _cmd_transcript(client: RuntimeClient, args: argparse.Namespace) -> int:
    entries = [e async for e in client.iter_transcript(args.worker_id)]
    if args.json:
        _print_json(entries)
        return 0
    for e in entries:
        m = e.message
        head = f"#{e.index} {m.role.lower()}"
        if m.tool_name:
            head += f" {m.tool_name}" + (" (error)" if m.is_error else "")
        print(f"{head} [{_time(e.created_at)} run {e.run_id or '-'}]")
        if m.reasoning:
            print("  (reasoning) " + m.reasoning.replace("\n", "\n  "))
        if m.text:
            print("  " + m.text.replace("\n", "\n  "))
        for c in m.tool_calls:
            print(f"  -> {c.name}({c.arguments}) id={c.call_id}")
    return 0


async def _cmd_usage(client: RuntimeClient, args: argparse.Namespace) -> int:
    summary = await client.get_usage(args.worker_id)
    if args.json:
        _print_json(summary)
        return 0
    u = summary.usage
    _block(
        [
            ("scope", f"worker {args.worker_id}" if args.worker_id else "runtime"),
            ("runs", summary.runs),
            ("input_tokens", u.input_tokens),
            ("output_tokens", u.output_tokens),
            ("cache_read_tokens", u.cache_read_tokens),
            ("cache_write_tokens", u.cache_write_tokens),
            ("reasoning_tokens", u.reasoning_tokens),
            ("total_tokens", u.total_tokens),
        ]
    )
    return 0
