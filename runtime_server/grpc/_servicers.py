"""Thin servicers: validate the request's wire-level shape, call the Runtime, convert the answer.
All domain rules live in the Runtime; all conversions in _convert; the error table in _errors.

Every RPC goes through one of two wrappers — :func:`unary` or :func:`stream` — which are the only
places that turn an exception into a gRPC status (:func:`_abort_with`); a servicer just raises."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, NoReturn, TypeAlias, TypeVar

import grpc

from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import catalog_service_pb2_grpc as cgrpc
from runtime_client.api import interaction_service_pb2 as ipb
from runtime_client.api import interaction_service_pb2_grpc as igrpc
from runtime_client.api import management_service_pb2 as mpb
from runtime_client.api import management_service_pb2_grpc as mgrpc
from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc
from runtime_client.api import types_pb2 as pb
from runtime_server import errors, wire_size
from runtime_server import model as m
from runtime_server.grpc import _convert as cv
from runtime_server.grpc._coalesce import gather_more
from runtime_server.grpc._errors import abort, status_details
from runtime_server.grpc._eventcache import EventCache
from runtime_server.grpc._wire import FRAME_OVERHEAD, batch_bytes
from runtime_server.model import DiagnosticLevel, now
from runtime_server.runtime import Runtime

log = logging.getLogger(__name__)

Ctx: TypeAlias = Any  # grpc ships no type hints: grpc.aio.ServicerContext
# SubscribeEventBatches: the most events in one EventBatch (documented in the proto)
MAX_BATCH_EVENTS = 256
Req = TypeVar("Req")
Resp = TypeVar("Resp")


async def _abort_with(context: Ctx, runtime: Runtime, exc: Exception) -> NoReturn:
    """The one place an exception becomes a gRPC status: a domain error by the error table
    (_errors); anything else is a bug, not the caller's mistake — logged with its traceback,
    recorded through the Runtime's diagnostics hook, answered INTERNAL without leaking internals."""
    if isinstance(exc, errors.RuntimeServiceError):
        await abort(context, exc)
    log.exception("unexpected error in RPC")
    runtime.diagnose(DiagnosticLevel.ERROR, "RPC_INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
    message = "internal error (recorded in the runtime's diagnostics)"
    await context.abort(
        grpc.StatusCode.INTERNAL,
        message,
        trailing_metadata=status_details(grpc.StatusCode.INTERNAL, message, "INTERNAL", {}),
    )
    raise AssertionError("unreachable: abort raises")  # pragma: no cover


def unary(
    fn: Callable[[Any, Req, Ctx], Awaitable[Resp]],
) -> Callable[[Any, Req, Ctx], Awaitable[Resp]]:
    """The wrapper of every unary RPC (a2a's ``_handle_unary``): errors -> status."""

    @functools.wraps(fn)
    async def handle_unary(self: Any, request: Req, context: Ctx) -> Resp:
        try:
            return await fn(self, request, context)
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_with(context, self._runtime, exc)

    return handle_unary


def stream(
    fn: Callable[[Any, Req, Ctx], AsyncGenerator[Resp, None]],
) -> Callable[[Any, Req, Ctx], AsyncGenerator[Resp, None]]:
    """The wrapper of every server-streaming RPC (a2a's ``_handle_stream``): errors raised
    before the first message or between messages -> status, as in :func:`unary`. The wrapped
    generator is closed promptly when the stream ends or the client goes away."""

    @functools.wraps(fn)
    async def handle_stream(self: Any, request: Req, context: Ctx) -> AsyncGenerator[Resp, None]:
        try:
            async with contextlib.aclosing(fn(self, request, context)) as messages:
                async for message in messages:
                    yield message
        except grpc.aio.AbortError:
            raise
        except Exception as exc:
            await _abort_with(context, self._runtime, exc)

    return handle_stream


class _Base:
    def __init__(self, runtime: Runtime, *, auth_required: bool = False) -> None:
        self._runtime = runtime
        self._auth_required = auth_required


class ManagementServicer(_Base, mgrpc.ManagementServiceServicer):
    @unary
    async def GetRuntime(
        self, request: mpb.GetRuntimeRequest, context: Ctx
    ) -> mpb.GetRuntimeResponse:
        info = await self._runtime.get_runtime()
        return mpb.GetRuntimeResponse(
            runtime=cv.runtime_info(info, auth_required=self._auth_required)
        )

    @unary
    async def ListDiagnostics(
        self, request: mpb.ListDiagnosticsRequest, context: Ctx
    ) -> mpb.ListDiagnosticsResponse:
        page = await self._runtime.list_diagnostics(
            page_size=request.page_size, page_token=request.page_token
        )
        return mpb.ListDiagnosticsResponse(
            diagnostics=[cv.diagnostic(d) for d in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    @unary
    async def ListProfiles(
        self, request: mpb.ListProfilesRequest, context: Ctx
    ) -> mpb.ListProfilesResponse:
        return mpb.ListProfilesResponse(
            profiles=[cv.profile(p) for p in await self._runtime.list_profiles()]
        )

    @unary
    async def ListWorkspaceClaims(
        self, request: mpb.ListWorkspaceClaimsRequest, context: Ctx
    ) -> mpb.ListWorkspaceClaimsResponse:
        page = await self._runtime.list_workspace_claims(
            worker_id=request.worker_id, page_size=request.page_size, page_token=request.page_token
        )
        return mpb.ListWorkspaceClaimsResponse(
            claims=[cv.workspace_claim(c) for c in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )


class CatalogServicer(_Base, cgrpc.CatalogServiceServicer):
    @unary
    async def CreateWorker(
        self, request: cpb.CreateWorkerRequest, context: Ctx
    ) -> cpb.CreateWorkerResponse:
        created = await self._runtime.create_worker(
            worker_id=request.worker_id,
            profile=request.profile,
            display_name=request.display_name,
            labels=dict(request.labels),
            request_id=request.request_id,
            workspace=cv.workspace(request.workspace, request.HasField("workspace")),
            config_bundle=cv.config_bundle(
                request.config_bundle, request.HasField("config_bundle")
            ),
            initial_input=request.initial_input,
            capabilities=tuple(request.capabilities),
        )
        return cpb.CreateWorkerResponse(
            worker=cv.worker(created.worker),
            seq=created.seq,
            initial_run=cv.run(created.initial_run) if created.initial_run else None,
        )

    @unary
    async def GetWorker(self, request: cpb.GetWorkerRequest, context: Ctx) -> cpb.GetWorkerResponse:
        worker = await self._runtime.get_worker(request.worker_id)
        return cpb.GetWorkerResponse(worker=cv.worker(worker))

    @unary
    async def ListWorkers(
        self, request: cpb.ListWorkersRequest, context: Ctx
    ) -> cpb.ListWorkersResponse:
        page = await self._runtime.list_workers(
            page_size=request.page_size,
            page_token=request.page_token,
            state=cv.worker_state_filter(request.state),
            labels=dict(request.labels),
        )
        return cpb.ListWorkersResponse(
            workers=[cv.worker(w) for w in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    @unary
    async def StopWorker(
        self, request: cpb.StopWorkerRequest, context: Ctx
    ) -> cpb.StopWorkerResponse:
        worker = await self._runtime.stop_worker(request.worker_id, reason=request.reason)
        return cpb.StopWorkerResponse(worker=cv.worker(worker))

    @unary
    async def DeleteWorker(
        self, request: cpb.DeleteWorkerRequest, context: Ctx
    ) -> cpb.DeleteWorkerResponse:
        await self._runtime.delete_worker(request.worker_id)
        return cpb.DeleteWorkerResponse()


class InteractionServicer(_Base, igrpc.InteractionServiceServicer):
    @unary
    async def SendInput(self, request: ipb.SendInputRequest, context: Ctx) -> ipb.SendInputResponse:
        accepted = await self._runtime.send_input(
            request.worker_id,
            request.text,
            request_id=request.request_id,
            busy_policy=cv.busy_policy(request.busy_policy),
        )
        return ipb.SendInputResponse(run=cv.run(accepted.run), seq=accepted.seq)

    @unary
    async def CancelRun(self, request: ipb.CancelRunRequest, context: Ctx) -> ipb.CancelRunResponse:
        return ipb.CancelRunResponse(run=cv.run(await self._runtime.cancel_run(request.run_id)))

    @unary
    async def GetRun(self, request: ipb.GetRunRequest, context: Ctx) -> ipb.GetRunResponse:
        return ipb.GetRunResponse(run=cv.run(await self._runtime.get_run(request.run_id)))


class ObservationServicer(_Base, ogrpc.ObservationServiceServicer):
    def __init__(self, runtime: Runtime, *, auth_required: bool = False) -> None:
        super().__init__(runtime, auth_required=auth_required)
        self._events = EventCache()  # each event converted once, for every stream and page

    @unary
    async def GetTranscript(
        self, request: opb.GetTranscriptRequest, context: Ctx
    ) -> opb.GetTranscriptResponse:
        page = await self._runtime.get_transcript(
            request.worker_id, page_size=request.page_size, page_token=request.page_token
        )
        return opb.GetTranscriptResponse(
            entries=[cv.entry(e) for e in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
            resume_after_seq=page.resume_after_seq,
        )

    @unary
    async def ListEvents(
        self, request: opb.ListEventsRequest, context: Ctx
    ) -> opb.ListEventsResponse:
        page = await self._runtime.list_events(
            after_seq=request.after_seq, worker_id=request.worker_id, page_size=request.page_size
        )
        return opb.ListEventsResponse(
            events=[self._events.convert(e) for e in page.events],
            last_seq=page.last_seq,
            oldest_seq=page.oldest_seq,
            next_after_seq=page.events[-1].seq if page.events else request.after_seq,
        )

    async def _event_lists(
        self, request: opb.SubscribeEventsRequest, max_events: int
    ) -> AsyncGenerator[list[bytes] | int, None]:
        """The one subscription loop behind SubscribeEvents and SubscribeEventBatches: lists of
        1..``max_events`` events in seq order, as their wire bytes (the first awaited, then, for
        ``max_events`` > 1, what the run keeps producing: _coalesce), or an int — a heartbeat at
        that last seq.
        When the runtime shuts down it aborts with UNAVAILABLE / RUNTIME_DRAINING (metadata
        ``last_seq``) after the last event (raising it for the stream wrapper to map, like
        lagging, cursor errors and bugs)."""
        runtime = self._runtime
        sub = runtime.subscribe(
            after_seq=request.after_seq,
            worker_id=request.worker_id,
            from_now=request.from_now,
            payload_types=tuple(request.payload_types),
        )
        interval = runtime.limits.heartbeat_interval_seconds or None
        more = max_events - 1
        encode = self._events.encode
        # Each event is encoded once per stream: weighing it for the batch's budget keeps its
        # bytes, which are what the batch sends (the last one weighed may be left for the next).
        encoded: list[bytes] = []

        def weigh(event: m.Event) -> int:  # its exact share of the batch (encoded once, kept)
            data = encode(event)
            encoded.append(data)
            return len(data) + FRAME_OVERHEAD

        # the batch's encoded size (the same budget as a ListEvents page)
        max_bytes = wire_size.page_budget(runtime.limits.max_message_bytes)
        try:
            while True:
                # raises SubscriberLagging, or a cursor error found during replay (-> status)
                event = await sub.next(interval)
                if event is not None:
                    if more:
                        await gather_more(sub, more)  # fewer, fuller messages (_coalesce)
                        encoded = []
                        first = weigh(event)
                        taken = sub.drain(more, weigh=weigh, max_weight=max_bytes - first)
                        del encoded[1 + len(taken) :]  # weighed, not taken: the next batch's
                        yield encoded
                    else:
                        yield [encode(event)]
                elif sub.closed:
                    # The runtime is shutting down and everything committed was delivered: say
                    # so, with the resume point (a clean OK end would read as "all is well").
                    raise errors.RuntimeDraining(sub.last_seq)
                else:
                    yield sub.last_seq
        finally:
            sub.close()

    # The two streams send an event as its wire bytes, encoded once (_wire, _eventcache); they
    # are registered to send bytes as they are (_server: send_encoded).
    #
    # Both take what a run is producing in one piece (_coalesce: until two loop steps bring
    # nothing new, at most MAX_WAIT). The per-event stream still sends one message per event,
    # but back to back: each message written while the run is still producing cost the stream a
    # wake-up of its own, and the client a read of its own (measured at c=16, 10-word echo: the
    # server's CPU per run -13 to -20%, the client's -14 to -19%).

    @stream
    async def SubscribeEvents(  # type: ignore[override]  # (bytes: see above)
        self, request: opb.SubscribeEventsRequest, context: Ctx
    ) -> AsyncGenerator[pb.Event | bytes, None]:
        async with contextlib.aclosing(self._event_lists(request, MAX_BATCH_EVENTS)) as lists:
            async for item in lists:
                if isinstance(item, int):
                    yield cv.heartbeat(item, now())
                else:
                    for data in item:
                        yield data

    @stream
    async def SubscribeEventBatches(  # type: ignore[override]  # (bytes: see above)
        self, request: opb.SubscribeEventsRequest, context: Ctx
    ) -> AsyncGenerator[opb.EventBatch | bytes, None]:
        async with contextlib.aclosing(self._event_lists(request, MAX_BATCH_EVENTS)) as lists:
            async for item in lists:
                if isinstance(item, int):
                    yield opb.EventBatch(events=[cv.heartbeat(item, now())])
                else:
                    yield batch_bytes(item)

    @unary
    async def GetUsage(self, request: opb.GetUsageRequest, context: Ctx) -> opb.GetUsageResponse:
        summary = await self._runtime.get_usage(request.worker_id)
        return opb.GetUsageResponse(
            usage=cv.usage(summary.usage),
            runs=summary.runs,
            lifetime_usage=cv.usage(summary.lifetime_usage),
            lifetime_runs=summary.lifetime_runs,
        )
