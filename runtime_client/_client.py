"""``RuntimeClient``: a typed asyncio client for one remote Runtime over gRPC.

One method per RPC, keyword arguments, client models in and out (see ``_models``); every grpc
error is translated once, in :meth:`RuntimeClient._unary` / :meth:`RuntimeClient.subscribe`, by
:func:`runtime_client.errors.from_rpc_error`. The bearer token goes out as per-call metadata
rather than call credentials, because grpc only attaches call credentials on TLS channels and a
token over a plaintext loopback or sidecar link is a legitimate setup.

:meth:`RuntimeClient.subscribe` is the hot path: a tight read loop on the raw call, a seq check,
one dict-dispatched conversion per event, and resumption (from the last seq it yielded) after the
stream is cut for lagging, unavailability or server shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio

from runtime_client import _convert
from runtime_client._models import (
    Accepted,
    BusyPolicy,
    ConfigBundleRef,
    Created,
    Diagnostic,
    Event,
    EventsPage,
    Page,
    Profile,
    Run,
    RunFinished,
    RuntimeInfo,
    TranscriptEntry,
    TranscriptPage,
    UsageSummary,
    Worker,
    WorkerDeleted,
    WorkerState,
    Workspace,
    WorkspaceClaim,
)
from runtime_client._retry import DEFAULT_RETRY, RetryPolicy
from runtime_client._tls import PathLike, channel_credentials
from runtime_client.api import (
    catalog_service_pb2 as catalog_pb,
)
from runtime_client.api import (
    catalog_service_pb2_grpc as catalog_grpc,
)
from runtime_client.api import (
    interaction_service_pb2 as interaction_pb,
)
from runtime_client.api import (
    interaction_service_pb2_grpc as interaction_grpc,
)
from runtime_client.api import (
    management_service_pb2 as management_pb,
)
from runtime_client.api import (
    management_service_pb2_grpc as management_grpc,
)
from runtime_client.api import (
    observation_service_pb2 as observation_pb,
)
from runtime_client.api import (
    observation_service_pb2_grpc as observation_grpc,
)
from runtime_client.errors import (
    CursorExpired,
    NotFound,
    RuntimeDraining,
    RuntimeServiceError,
    SubscriberLagging,
    Unavailable,
    from_rpc_error,
)

if TYPE_CHECKING:
    from typing import Self

__all__ = ["DEFAULT_BACKOFF", "Backoff", "RuntimeClient"]

# A transcript page can carry big tool results; grpc's 4 MiB default would fail such reads
# client-side even though the server sent them legitimately.
_DEFAULT_CHANNEL_OPTIONS: dict[str, Any] = {
    "grpc.max_receive_message_length": 64 * 1024 * 1024,
    # Reconnect to a restarted Runtime within ~2 s of its return: grpc's own backoff grows to
    # 120 s, and while it waits every call fails UNAVAILABLE at once (retries included).
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2000,
}

# Errors after which a subscription reconnects and resumes instead of raising.
_RESUMABLE = (SubscriberLagging, Unavailable, RuntimeDraining)
# Errors after which a unary call that is safe to repeat is retried (RetryPolicy).
_RETRYABLE = (Unavailable, RuntimeDraining)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Bounded exponential backoff between reconnects: ``initial * multiplier**(n-1)`` capped at
    ``maximum``, minus up to ``jitter`` of it at random (so many clients cut at once by a
    restarting Runtime do not reconnect in lockstep)."""

    initial: float = 0.1
    maximum: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2

    def delay(self, attempt: int) -> float:
        base = min(self.maximum, self.initial * self.multiplier ** max(0, attempt - 1))
        return base * (1.0 - self.jitter * random.random())


DEFAULT_BACKOFF = Backoff()


class RuntimeClient:
    """A client of one Runtime. Use as ``async with RuntimeClient("host:port") as client:``.

    Construct it inside a running event loop (grpc.aio binds the channel to it). TLS needs no
    grpc import: ``tls=True`` verifies the server against the system roots; ``ca_file`` (PEM CA
    bundle) verifies it against that CA instead; ``cert_file`` + ``key_file`` (PEM) present a
    client certificate (mutual TLS). Any file implies TLS; the files are read and checked here
    (``ValueError`` naming the argument). ``tls`` may also be ready-made
    ``grpc.ChannelCredentials``. ``timeout`` is the deadline of every unary call; subscriptions
    have none. ``channel_options`` are grpc channel arguments, merged over the client's defaults.
    ``retry`` says how unary calls that are safe to repeat (reads, Stop/Delete/Cancel, and
    CreateWorker/SendInput with a ``request_id``) are retried after UNAVAILABLE or
    RUNTIME_DRAINING, e.g. while the Runtime restarts (``NO_RETRY`` turns it off; see
    ``runtime_client._retry`` for the rules).
    """

    def __init__(
        self,
        target: str,
        *,
        token: str | None = None,
        tls: bool | grpc.ChannelCredentials = False,
        ca_file: PathLike | None = None,
        cert_file: PathLike | None = None,
        key_file: PathLike | None = None,
        channel_options: Mapping[str, Any] | Sequence[tuple[str, Any]] = (),
        timeout: float | None = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        creds = channel_credentials(tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        options = dict(_DEFAULT_CHANNEL_OPTIONS)
        options.update(channel_options)
        opts = list(options.items())
        if creds is None:
            channel = grpc.aio.insecure_channel(target, options=opts)
        else:
            channel = grpc.aio.secure_channel(target, creds, options=opts)
        self._setup(channel, token=token, timeout=timeout, owns_channel=True, retry=retry)
        self.target = target

    @classmethod
    def from_channel(
        cls,
        channel: grpc.aio.Channel,
        *,
        token: str | None = None,
        timeout: float | None = 30.0,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> RuntimeClient:
        """Wrap a channel the caller owns (``close`` will not close it)."""
        self = cls.__new__(cls)
        self._setup(channel, token=token, timeout=timeout, owns_channel=False, retry=retry)
        self.target = ""
        return self

    def _setup(
        self,
        channel: grpc.aio.Channel,
        *,
        token: str | None,
        timeout: float | None,
        owns_channel: bool,
        retry: RetryPolicy = DEFAULT_RETRY,
    ) -> None:
        self._channel = channel
        self._retry = retry
        self._owns_channel = owns_channel
        self._closed = False
        self._timeout = timeout
        self._metadata: tuple[tuple[str, str], ...] | None = (
            (("authorization", f"Bearer {token}"),) if token else None
        )
        # The runtime classes are the sync-typed *Stub; the .pyi's *AsyncStub describes what
        # they return on an aio channel.
        self._management = cast(
            "management_grpc.ManagementServiceAsyncStub",
            management_grpc.ManagementServiceStub(channel),
        )
        self._catalog = cast(
            "catalog_grpc.CatalogServiceAsyncStub", catalog_grpc.CatalogServiceStub(channel)
        )
        self._interaction = cast(
            "interaction_grpc.InteractionServiceAsyncStub",
            interaction_grpc.InteractionServiceStub(channel),
        )
        self._observation = cast(
            "observation_grpc.ObservationServiceAsyncStub",
            observation_grpc.ObservationServiceStub(channel),
        )

    @property
    def channel(self) -> grpc.aio.Channel:
        return self._channel

    async def close(self, grace: float | None = None) -> None:
        """Close the channel if this client created it. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns_channel:
            await self._channel.close(grace)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def _unary(
        self, method: Any, request: Any, *, safe: bool = False, gone_is_done: bool = False
    ) -> Any:
        """One unary call. ``safe``: repeating it cannot do anything twice, so UNAVAILABLE and
        RUNTIME_DRAINING are retried under the client's RetryPolicy. ``gone_is_done``: a retry
        that answers NOT_FOUND means an earlier attempt already did the job (DeleteWorker)."""
        if not safe or self._retry.max_attempts <= 1:
            try:
                return await method(request, timeout=self._timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                raise from_rpc_error(exc) from exc
        return await self._retrying(method, request, gone_is_done)

    async def _retrying(self, method: Any, request: Any, gone_is_done: bool) -> Any:
        policy = self._retry
        loop = asyncio.get_running_loop()
        start = loop.time()
        # the call's own timeout bounds the whole call, retries included
        deadline = None if self._timeout is None else start + self._timeout
        attempt = 0
        while True:
            attempt += 1
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                return await method(request, timeout=timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                if gone_is_done and attempt > 1 and isinstance(error, NotFound):
                    return None
                if not isinstance(error, _RETRYABLE) or attempt >= policy.max_attempts:
                    raise error from exc
                wait = policy.delay(attempt)
                resume = loop.time() + wait
                if resume > start + policy.budget_s or (
                    deadline is not None and resume >= deadline
                ):
                    raise error from exc
            await asyncio.sleep(wait)

    # --- ManagementService --------------------------------------------------------------------

    async def get_runtime(self) -> RuntimeInfo:
        resp = await self._unary(
            self._management.GetRuntime, management_pb.GetRuntimeRequest(), safe=True
        )
        return _convert.runtime_info(resp.runtime)

    async def list_diagnostics(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> Page[Diagnostic]:
        """Newest first."""
        req = management_pb.ListDiagnosticsRequest(page_size=page_size, page_token=page_token)
        return _convert.diagnostics_page(
            await self._unary(self._management.ListDiagnostics, req, safe=True)
        )

    async def list_profiles(self) -> tuple[Profile, ...]:
        resp = await self._unary(
            self._management.ListProfiles, management_pb.ListProfilesRequest(), safe=True
        )
        return tuple(_convert.profile(p) for p in resp.profiles)

    async def list_workspace_claims(
        self, *, worker_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> Page[WorkspaceClaim]:
        """The allocation manager's claims: paths live workers hold, read-only or read-write."""
        req = management_pb.ListWorkspaceClaimsRequest(
            worker_id=worker_id, page_size=page_size, page_token=page_token
        )
        resp = await self._unary(self._management.ListWorkspaceClaims, req)
        return Page(
            items=tuple(_convert.workspace_claim(c) for c in resp.claims),
            next_page_token=resp.next_page_token,
            total_size=resp.total_size,
        )

    # --- CatalogService -----------------------------------------------------------------------

    async def create_worker(
        self,
        *,
        worker_id: str = "",
        profile: str = "",
        display_name: str = "",
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        workspace: Workspace | None = None,
        config_bundle: ConfigBundleRef | None = None,
        initial_input: str = "",
        capabilities: Sequence[str] = (),
    ) -> Created:
        """Create a worker (profile "" = the built-in ``echo``). Repeating a ``request_id``
        returns the first result. ``capabilities`` (``fs.read``, ``fs.write``, ``clock``) narrow
        the profile's tools; empty = the profile's tools (always within the host's policy)."""
        req = _convert.create_worker_request(
            worker_id=worker_id,
            profile=profile,
            display_name=display_name,
            labels=labels,
            request_id=request_id,
            workspace=workspace,
            config_bundle=config_bundle,
            initial_input=initial_input,
            capabilities=capabilities,
        )
        # only with a request_id is a repeat answered with the first result
        resp = await self._unary(self._catalog.CreateWorker, req, safe=bool(request_id))
        return _convert.created(resp)

    async def get_worker(self, worker_id: str) -> Worker:
        req = catalog_pb.GetWorkerRequest(worker_id=worker_id)
        return _convert.worker((await self._unary(self._catalog.GetWorker, req, safe=True)).worker)

    async def list_workers(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Page[Worker]:
        """One page; ``state``/``labels`` filter (a worker must carry all the labels)."""
        req = _convert.list_workers_request(
            page_size=page_size, page_token=page_token, state=state, labels=labels
        )
        return _convert.workers_page(await self._unary(self._catalog.ListWorkers, req, safe=True))

    async def iter_workers(
        self,
        *,
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> AsyncGenerator[Worker, None]:
        """Every matching worker, fetching pages as needed."""
        token = ""
        while True:
            page = await self.list_workers(
                page_size=page_size, page_token=token, state=state, labels=labels
            )
            for w in page.items:
                yield w
            token = page.next_page_token
            if not token:
                return

    async def stop_worker(self, worker_id: str, *, reason: str = "") -> Worker:
        """Cancel the active run, drop queued inputs; idempotent."""
        req = catalog_pb.StopWorkerRequest(worker_id=worker_id, reason=reason)
        return _convert.worker((await self._unary(self._catalog.StopWorker, req, safe=True)).worker)

    async def delete_worker(self, worker_id: str) -> None:
        req = catalog_pb.DeleteWorkerRequest(worker_id=worker_id)
        await self._unary(self._catalog.DeleteWorker, req, safe=True, gone_is_done=True)

    # --- InteractionService -------------------------------------------------------------------

    async def send_input(
        self,
        worker_id: str,
        text: str,
        *,
        request_id: str = "",
        busy_policy: BusyPolicy = BusyPolicy.REJECT,
    ) -> Accepted:
        """Start (or queue) a run. ``Accepted.seq`` is the seq of its RunQueued event: subscribe
        with ``after_seq=accepted.seq`` to see everything the run does."""
        req = _convert.send_input_request(
            worker_id=worker_id, text=text, request_id=request_id, busy_policy=busy_policy
        )
        # only with a request_id is a repeat answered with the first result
        resp = await self._unary(self._interaction.SendInput, req, safe=bool(request_id))
        return _convert.accepted(resp)

    async def cancel_run(self, run_id: str) -> Run:
        """Idempotent; the run ends CANCELLED unless it already finished."""
        req = interaction_pb.CancelRunRequest(run_id=run_id)
        return _convert.run((await self._unary(self._interaction.CancelRun, req, safe=True)).run)

    async def get_run(self, run_id: str) -> Run:
        req = interaction_pb.GetRunRequest(run_id=run_id)
        return _convert.run((await self._unary(self._interaction.GetRun, req, safe=True)).run)

    # a timeout parameter (not only asyncio.timeout around the call) is part of the API contract
    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        """Wait until the run is terminal and return it; ``TimeoutError`` after ``timeout``.

        Subscription-based, not polling: it reads the log's ``last_seq`` *before* reading the
        run, so if the run is still active its RunFinished must have a larger seq and the
        subscription (worker-filtered, from that seq) cannot miss it. If retention trims the log
        past that cursor first (a busy run, a small retention), it starts over from a fresh one.
        """
        async with asyncio.timeout(timeout):
            while True:
                cursor = (await self.get_runtime()).last_seq
                run = await self.get_run(run_id)
                if run.terminal:
                    return run
                events = self.subscribe(run.worker_id, after_seq=cursor)
                try:
                    async with contextlib.aclosing(events):
                        async for ev in events:
                            payload = ev.payload
                            if isinstance(payload, RunFinished) and payload.run.run_id == run_id:
                                return payload.run
                except CursorExpired:
                    continue  # the events are gone, not the run: read it again
                # the stream ended without it (the worker was deleted): ask the server
                return await self.get_run(run_id)

    # --- ObservationService -------------------------------------------------------------------

    async def get_transcript(
        self, worker_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> TranscriptPage:
        req = observation_pb.GetTranscriptRequest(
            worker_id=worker_id, page_size=page_size, page_token=page_token
        )
        return _convert.transcript_page(
            await self._unary(self._observation.GetTranscript, req, safe=True)
        )

    async def iter_transcript(
        self, worker_id: str, *, page_size: int = 0
    ) -> AsyncGenerator[TranscriptEntry, None]:
        """The whole transcript, oldest first, fetching pages as needed."""
        token = ""
        while True:
            page = await self.get_transcript(worker_id, page_size=page_size, page_token=token)
            for entry in page.items:
                yield entry
            token = page.next_page_token
            if not token:
                return

    async def list_events(
        self, *, after_seq: int = 0, worker_id: str = "", page_size: int = 0
    ) -> EventsPage:
        """Poll the log: events with seq > ``after_seq`` (0 = from the oldest retained)."""
        req = observation_pb.ListEventsRequest(
            worker_id=worker_id, after_seq=after_seq, page_size=page_size
        )
        return _convert.events_page(await self._unary(self._observation.ListEvents, req, safe=True))

    async def get_usage(self, worker_id: str = "") -> UsageSummary:
        """Usage of one worker, or of the whole Runtime when ``worker_id`` is empty."""
        req = observation_pb.GetUsageRequest(worker_id=worker_id)
        return _convert.usage_summary(await self._unary(self._observation.GetUsage, req, safe=True))

    async def subscribe(
        self,
        worker_id: str = "",
        after_seq: int = 0,
        from_now: bool = False,
        *,
        resume: bool = True,
        include_heartbeats: bool = False,
        max_reconnects: int | None = 10,
        backoff: Backoff = DEFAULT_BACKOFF,
        batched: bool = True,
        on_retry: Callable[[RuntimeServiceError, float], object] | None = None,
        payload_types: Sequence[str] = (),
    ) -> AsyncGenerator[Event, None]:
        """Events with seq > ``after_seq`` (0 = oldest retained; ``from_now`` = only new ones),
        replayed then live, optionally for one worker only, of ``payload_types`` kinds only.

        With ``resume`` (the default) the stream survives being cut: after SUBSCRIBER_LAGGING,
        UNAVAILABLE / RUNTIME_DRAINING, or a stream the server ended (shutdown), it reconnects
        with ``after_seq`` = the last seq it yielded, so nothing is duplicated or skipped. Waits
        follow ``backoff`` (a lagging cut after progress reconnects at once); ``max_reconnects``
        consecutive failures without receiving anything raise the last error (None = never give
        up). Every other error is raised: CursorExpired (the cursor aged out of retention),
        CursorAhead (the Runtime lost its log), Unauthenticated, NotFound, ...

        A ``from_now`` subscription has no cursor until it receives an event or a heartbeat
        (whose ``last_seq`` becomes the cursor); if it is cut before either, it resubscribes
        ``from_now`` and events committed in between are not delivered.

        A worker-filtered subscription ends after delivering that worker's WorkerDeleted.
        Heartbeats (seq 0) are yielded only with ``include_heartbeats``. Close the iterator
        (``contextlib.aclosing``) when leaving early, so the call is cancelled promptly.

        With ``batched`` (the default) it reads SubscribeEventBatches — several events per
        message when they are ready together, fewer stream messages per run — and yields their
        events one by one; ``batched=False`` reads SubscribeEvents (one event per message). Both
        yield the same events.

        At a Runtime's shutdown the stream first delivers every committed event (the runs'
        ``RunFinished(INTERRUPTED)`` included) and then ends with RuntimeDraining (UNAVAILABLE,
        ``last_seq`` in its metadata); with ``resume`` this subscription then keeps reconnecting
        with ``backoff`` until the Runtime is back (or ``max_reconnects`` is spent), without
        ``resume`` it raises that RuntimeDraining. ``on_retry(error, delay_s)`` is called before
        each wait to reconnect (e.g. to tell a user "waiting for server").
        """
        obs = self._observation
        start: Any = obs.SubscribeEventBatches if batched else obs.SubscribeEvents
        metadata = self._metadata
        convert = _convert.event
        eof = grpc.aio.EOF
        cursor = after_seq
        live_only = from_now  # no cursor yet: (re)subscribe from_now
        kinds = list(payload_types)  # KIND names, filtered by the server (seqs then have gaps)
        failures = 0
        while True:
            request = observation_pb.SubscribeEventsRequest(
                worker_id=worker_id, after_seq=cursor, from_now=live_only, payload_types=kinds
            )
            call = start(request, metadata=metadata)
            error: RuntimeServiceError | None = None
            try:
                read = call.read
                while True:
                    msg = await read()
                    if msg is eof:
                        break
                    failures = 0
                    for m in msg.events if batched else (msg,):
                        seq = m.seq
                        if not seq:  # heartbeat
                            if live_only:
                                # everything up to last_seq was committed before now and none of
                                # it was for this stream, so it is a safe resume point
                                cursor = max(cursor, m.heartbeat.last_seq)
                                live_only = False
                            if include_heartbeats:
                                yield convert(m)
                            continue
                        if seq <= cursor and not live_only:
                            continue  # already delivered (defensive: the server never resends)
                        event = convert(m)
                        cursor = seq
                        live_only = False
                        yield event
                        if worker_id and event.payload.__class__ is WorkerDeleted:
                            return
            except grpc.aio.AioRpcError as exc:
                error = from_rpc_error(exc)
                if not resume or not isinstance(error, _RESUMABLE):
                    raise error from exc
                failures += 1
                if max_reconnects is not None and failures > max_reconnects:
                    raise error from exc
            finally:
                call.cancel()  # no-op when finished; stops the stream when the consumer leaves
            if error is None:  # the server ended the stream: shutdown or restart
                if not resume:
                    return
                failures += 1
                if max_reconnects is not None and failures > max_reconnects:
                    raise Unavailable(
                        f"event stream ended by the server {failures} times in a row; "
                        f"resume with after_seq={cursor}"
                    )
            if isinstance(error, SubscriberLagging) and failures == 1:
                continue  # we were merely slow; the server is healthy
            delay = backoff.delay(failures)
            if on_retry is not None:
                on_retry(error or Unavailable("the server ended the event stream"), delay)
            await asyncio.sleep(delay)
