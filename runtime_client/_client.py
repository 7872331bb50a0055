"""``RuntimeClient``: a typed asyncio client for one remote Runtime over gRPC.

One method per RPC, keyword arguments, client models in and out (see ``_models``); every grpc
error is translated once, in :meth:`RuntimeClient._unary` / :meth:`RuntimeClient.subscribe`, by
:func:`runtime_client.errors.from_rpc_error`. The bearer token goes out as per-call metadata
rather than call credentials, because grpc only attaches call credentials on TLS channels and a
token over a plaintext loopback or sidecar link is a legitimate setup.

``subscribe`` and ``wait_run``, the streaming half, live in ``_streams`` (inherited from
:class:`~runtime_client._streams.StreamCalls`); the ConfigService calls in ``_bundles``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, cast

import grpc
import grpc.aio

from runtime_client import _bundles, _convert
from runtime_client._models import (
    Accepted,
    BusyPolicy,
    ConfigBundleRef,
    Created,
    Diagnostic,
    EventsPage,
    Page,
    Profile,
    Run,
    RuntimeInfo,
    TranscriptEntry,
    TranscriptPage,
    UsageSummary,
    Worker,
    WorkerState,
    Workspace,
    WorkspaceClaim,
)
from runtime_client._retry import DEFAULT_RETRY, RetryPolicy
from runtime_client._streams import DEFAULT_BACKOFF, Backoff, StreamCalls
from runtime_client._text import bearer_metadata, check_unicode, request
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
    NotFound,
    RuntimeDraining,
    Unavailable,
    from_rpc_error,
)

if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_RECEIVE_MESSAGE_BYTES",
    "Backoff",
    "RuntimeClient",
    "check_receive_limit",
]


def check_receive_limit(value: int, name: str = "max_receive_message_bytes") -> int:
    """``value`` if it is a sound receive limit, else ValueError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name}: must be an integer (bytes)")
    if not _MIN_RECEIVE_MESSAGE_BYTES <= value <= 2**31 - 1:
        raise ValueError(f"{name}: must be {_MIN_RECEIVE_MESSAGE_BYTES}..{2**31 - 1} bytes")
    return value


# The largest answer the client takes: an explicit bound (``max_receive_message_bytes``), so
# that a hostile or broken runtime cannot make the client (the Backend, on every poll) hold a
# huge answer. A runtime never sends a message past its own ``max_message_bytes`` (reported in
# GetRuntime's limits; 4 MiB by default): pages, transcript windows and event batches are all
# cut to fit it. So the default is that default; a runtime configured with more needs the same
# here. Past it, grpc refuses the message as its length arrives (it is never held), and the
# call raises MessageTooLarge.
DEFAULT_MAX_RECEIVE_MESSAGE_BYTES = 4 * 1024 * 1024
_MIN_RECEIVE_MESSAGE_BYTES = 64 * 1024  # below this, ordinary answers would not fit

_DEFAULT_CHANNEL_OPTIONS: dict[str, Any] = {
    # Reconnect to a restarted Runtime within ~2 s of its return: grpc's own backoff grows to
    # 120 s, and while it waits every call fails UNAVAILABLE at once (retries included).
    "grpc.initial_reconnect_backoff_ms": 200,
    "grpc.max_reconnect_backoff_ms": 2000,
}

# Errors after which a unary call that is safe to repeat is retried (RetryPolicy).
_RETRYABLE = (Unavailable, RuntimeDraining)


class RuntimeClient(_bundles.BundleCalls, StreamCalls):
    """A client of one Runtime. Use as ``async with RuntimeClient("host:port") as client:``.

    Construct it inside a running event loop (grpc.aio binds the channel to it). TLS needs no
    grpc import: ``tls=True`` verifies the server against the system roots; ``ca_file`` (PEM CA
    bundle) verifies it against that CA instead; ``cert_file`` + ``key_file`` (PEM) present a
    client certificate (mutual TLS). Any file implies TLS; the files are read and checked here
    (``ValueError`` naming the argument). ``tls`` may also be ready-made
    ``grpc.ChannelCredentials``. ``timeout`` is the deadline of every unary call; subscriptions
    have none. ``max_receive_message_bytes`` bounds every answer (default 4 MiB, a runtime's
    default ``max_message_bytes``; past it a call raises MessageTooLarge and the message is never
    held). ``channel_options`` are grpc channel arguments, merged over the client's defaults.
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
        max_receive_message_bytes: int = DEFAULT_MAX_RECEIVE_MESSAGE_BYTES,
    ) -> None:
        creds = channel_credentials(tls, ca_file=ca_file, cert_file=cert_file, key_file=key_file)
        options = dict(_DEFAULT_CHANNEL_OPTIONS)
        options["grpc.max_receive_message_length"] = check_receive_limit(max_receive_message_bytes)
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
        self._metadata = bearer_metadata(token)
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
        check_unicode(page_token=page_token)
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
        check_unicode(worker_id=worker_id, page_token=page_token)
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
        req = request(catalog_pb.GetWorkerRequest, worker_id=worker_id)
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
        req = request(catalog_pb.StopWorkerRequest, worker_id=worker_id, reason=reason)
        return _convert.worker((await self._unary(self._catalog.StopWorker, req, safe=True)).worker)

    async def delete_worker(self, worker_id: str) -> None:
        req = request(catalog_pb.DeleteWorkerRequest, worker_id=worker_id)
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
        req = request(interaction_pb.CancelRunRequest, run_id=run_id)
        return _convert.run((await self._unary(self._interaction.CancelRun, req, safe=True)).run)

    async def get_run(self, run_id: str) -> Run:
        req = request(interaction_pb.GetRunRequest, run_id=run_id)
        return _convert.run((await self._unary(self._interaction.GetRun, req, safe=True)).run)

    # --- ObservationService -------------------------------------------------------------------

    async def get_transcript(
        self, worker_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> TranscriptPage:
        check_unicode(worker_id=worker_id, page_token=page_token)
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
        check_unicode(worker_id=worker_id)
        req = observation_pb.ListEventsRequest(
            worker_id=worker_id, after_seq=after_seq, page_size=page_size
        )
        return _convert.events_page(await self._unary(self._observation.ListEvents, req, safe=True))

    async def get_usage(self, worker_id: str = "") -> UsageSummary:
        """Usage of one worker, or of the whole Runtime when ``worker_id`` is empty."""
        req = request(observation_pb.GetUsageRequest, worker_id=worker_id)
        return _convert.usage_summary(await self._unary(self._observation.GetUsage, req, safe=True))
