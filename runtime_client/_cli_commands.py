"""The client commands of ``worker-runtime``: one coroutine per command, each taking the client
and the parsed arguments and returning the exit code."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_client._cli_render import (
    _block,
    _event_line,
    _labels_text,
    _print_json,
    _run_block,
    _run_line,
    _short,
    _table,
    _time,
    _usage_text,
    _worker_block,
)
from runtime_client._client import RuntimeClient
from runtime_client._models import (
    BusyPolicy,
    Diagnostic,
    Event,
    Mount,
    MountMode,
    PartialDiscarded,
    Run,
    RunFinished,
    RunState,
    TextDelta,
    ToolCallFinished,
    ToolCallStarted,
    WorkerState,
    Workspace,
    WorkspaceClaim,
)
from runtime_client.errors import RuntimeServiceError, from_rpc_error

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
            ("usage", _usage_text(info.usage) + " (workers held now)"),
            (
                "lifetime usage",
                f"{_usage_text(info.lifetime_usage)} over {info.lifetime_runs} "
                f"run{'' if info.lifetime_runs == 1 else 's'} (deleted workers included)",
            ),
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
        # (the server clamps a page to its max_page_size; the request's field is a uint32)
        size = min(args.limit - len(items), 2**31 - 1)
        page = await client.list_diagnostics(page_size=size, page_token=token)
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
        config_bundle=args.bundle,
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


class _Waiting:
    """Tells the user on stderr, once per outage, that a followed stream waits for the server
    (a shut-down or unreachable Runtime), and when events flow again."""

    def __init__(self) -> None:
        self.down = False

    def retry(self, error: RuntimeServiceError, delay: float) -> None:
        if not self.down:
            self.down = True
            print(f"waiting for server… ({error.reason}: {error.message})", file=sys.stderr)
            sys.stderr.flush()

    def back(self) -> None:
        if self.down:
            self.down = False
            print("server is back; resuming", file=sys.stderr, flush=True)


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
    waiting = _Waiting()
    events = client.subscribe(
        args.worker_id, after_seq=accepted.seq, max_reconnects=None, on_retry=waiting.retry
    )
    try:
        async with contextlib.aclosing(events):
            async for ev in events:
                waiting.back()
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
        waiting = _Waiting()
        events = client.subscribe(
            args.worker,
            after_seq=args.after or 0,
            from_now=args.after is None,
            max_reconnects=None,  # following means waiting for the server to come back
            on_retry=waiting.retry,
        )
        async with contextlib.aclosing(events):
            async for ev in events:
                waiting.back()
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
        if m.incomplete:
            head += f" (incomplete: {m.stop_reason})"
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
    rows: list[tuple[str, object]] = [
        ("scope", f"worker {args.worker_id}" if args.worker_id else "runtime (workers held now)"),
        ("runs", summary.runs),
        ("input_tokens", u.input_tokens),
        ("output_tokens", u.output_tokens),
        ("cache_read_tokens", u.cache_read_tokens),
        ("cache_write_tokens", u.cache_write_tokens),
        ("reasoning_tokens", u.reasoning_tokens),
        ("total_tokens", u.total_tokens),
    ]
    if not args.worker_id:  # a worker's lifetime is its usage; the runtime's outlives deletes
        life = summary.lifetime_usage
        rows += [
            ("lifetime_runs", summary.lifetime_runs),
            ("lifetime_input_tokens", life.input_tokens),
            ("lifetime_output_tokens", life.output_tokens),
            ("lifetime_cache_read_tokens", life.cache_read_tokens),
            ("lifetime_cache_write_tokens", life.cache_write_tokens),
            ("lifetime_reasoning_tokens", life.reasoning_tokens),
            ("lifetime_total_tokens", life.total_tokens),
        ]
    _block(rows)
    return 0


async def _cmd_health(client: RuntimeClient, args: argparse.Namespace) -> int:
    """The standard grpc.health.v1 check (no token needed): prints the status; exit 0 only when
    SERVING, 1 otherwise (NOT_SERVING while draining, UNKNOWN service, unreachable)."""
    stub = health_pb2_grpc.HealthStub(client.channel)
    request = health_pb2.HealthCheckRequest(service=args.service)
    try:
        resp = await stub.Check(request, timeout=args.timeout)
    except grpc.aio.AioRpcError as exc:
        raise from_rpc_error(exc) from exc
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
    if args.json:
        _print_json({"service": args.service, "status": status})
    else:
        print(status)
    return 0 if resp.status == health_pb2.HealthCheckResponse.SERVING else 1
