"""The grpc.aio server around a Runtime: servicers, health, reflection, auth, TLS, limits, and an
ordered, idempotent shutdown."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import catalog_service_pb2_grpc as cgrpc
from runtime_client.api import interaction_service_pb2 as ipb
from runtime_client.api import interaction_service_pb2_grpc as igrpc
from runtime_client.api import management_service_pb2 as mpb
from runtime_client.api import management_service_pb2_grpc as mgrpc
from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import observation_service_pb2_grpc as ogrpc
from runtime_server.grpc import _config
from runtime_server.grpc._auth import BearerAuth
from runtime_server.grpc._connections import connection_options
from runtime_server.grpc._edge import Edge
from runtime_server.grpc._health import BoundedHealthServicer
from runtime_server.grpc._ops import Ops, OpsOptions
from runtime_server.grpc._reflection import add_reflection
from runtime_server.grpc._servicers import (
    CatalogServicer,
    InteractionServicer,
    ManagementServicer,
    ObservationServicer,
)
from runtime_server.grpc._wire import send_encoded
from runtime_server.runtime import Runtime, StoreState

log = logging.getLogger(__name__)

SERVICE_NAMES = (
    mpb.DESCRIPTOR.services_by_name["ManagementService"].full_name,
    cpb.DESCRIPTOR.services_by_name["CatalogService"].full_name,
    ipb.DESCRIPTOR.services_by_name["InteractionService"].full_name,
    opb.DESCRIPTOR.services_by_name["ObservationService"].full_name,
    _config.SERVICE_NAME,
)
_OBSERVATION = opb.DESCRIPTOR.services_by_name["ObservationService"].full_name
ENCODED_METHODS = (f"/{_OBSERVATION}/SubscribeEvents", f"/{_OBSERVATION}/SubscribeEventBatches")


@dataclass(frozen=True, slots=True)
class TLSFiles:
    cert: Path
    key: Path
    client_ca: Path | None = None  # set: require client certificates (mutual TLS)

    def credentials(self) -> grpc.ServerCredentials:
        ca = self.client_ca.read_bytes() if self.client_ca else None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


class RuntimeServer:
    """Serves one Runtime. ``start`` binds; ``stop`` drains in order:

    1. health → NOT_SERVING (load balancers stop sending work),
    2. the Runtime drains (new work refused with UNAVAILABLE, active runs end as INTERRUPTED
       after ``grace_s``, subscription streams end cleanly),
    3. the gRPC server stops, giving in-flight calls ``grace_s``.
    """

    def __init__(
        self,
        runtime: Runtime,
        *,
        auth_token: str | None = None,
        tls: TLSFiles | None = None,
        ops: OpsOptions | None = None,
    ) -> None:
        self.runtime = runtime
        self._auth_token = auth_token
        self._tls = tls
        self._health = BoundedHealthServicer(runtime.limits.max_subscribers)
        max_bytes = runtime.limits.max_message_bytes
        # metrics, access log and the health port (_ops)
        self._ops = Ops(runtime, ops or OpsOptions(), self._health, SERVICE_NAMES)
        # The server's one generic handler: each method is routed to a handler built once, at
        # registration (auth's deny handler when the token is missing; the observing wrapper
        # when metrics or the access log are on; the decode guard always): no interceptors.
        self._edge = Edge(
            observer=self._ops.observer,
            auth=BearerAuth(auth_token) if auth_token else None,
        )
        self._server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", max_bytes),
                ("grpc.max_send_message_length", max_bytes),
                ("grpc.keepalive_time_ms", 30_000),
                ("grpc.keepalive_permit_without_calls", 1),
                *connection_options(runtime.limits),
                # grpc sets SO_REUSEPORT by default: a second server on a taken port would start,
                # and calls would go to either runtime at random. Runtimes are not
                # interchangeable, so binding a taken port must fail.
                ("grpc.so_reuseport", 0),
            ],
        )
        auth = auth_token is not None
        # Handlers are registered through the edge: a body that does not decode answers
        # INVALID_ARGUMENT (MALFORMED_REQUEST), never UNKNOWN with a traceback (_decoding).
        target = self._edge
        self._server.add_generic_rpc_handlers((self._edge,))
        # The subscription streams send events as wire bytes encoded once per event (_wire).
        observation = send_encoded(target, ENCODED_METHODS)
        mgrpc.add_ManagementServiceServicer_to_server(
            ManagementServicer(runtime, auth_required=auth), target
        )
        cgrpc.add_CatalogServiceServicer_to_server(CatalogServicer(runtime), target)
        igrpc.add_InteractionServiceServicer_to_server(InteractionServicer(runtime), target)
        ogrpc.add_ObservationServiceServicer_to_server(ObservationServicer(runtime), observation)
        _config.add_config_service(runtime, target)  # config bundles (_config)
        health_pb2_grpc.add_HealthServicer_to_server(self._health, target)
        # grpc.reflection.v1 and v1alpha (_reflection)
        add_reflection(
            (*SERVICE_NAMES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name), target
        )
        self.port = 0
        self._stopping: asyncio.Task[None] | None = None
        self._health_updates: set[asyncio.Task[None]] = set()

    async def start(self, listen: str = "127.0.0.1:0") -> int:
        try:
            if self._tls is not None:
                port: int = self._server.add_secure_port(listen, self._tls.credentials())
            else:
                port = self._server.add_insecure_port(listen)
        except RuntimeError:  # grpc's "Failed to bind to address ...": say it in one line
            port = 0
        if port == 0:
            raise OSError(f"cannot listen on {listen}: the address is in use or not available")
        try:
            # the health port answers NOT_SERVING until the store is open and recovered
            await self._ops.start_health()
            await self._ops.start_metrics()
            await self.runtime.start()
        except BaseException:
            await self._ops.stop()
            raise
        await self._server.start()
        for name in ("", *SERVICE_NAMES):
            await self._health.set(name, health_pb2.HealthCheckResponse.SERVING)
        self.runtime.watch_store(self._on_store_state)
        self.port = port
        return port

    @property
    def metrics_port(self) -> int:
        return self._ops.metrics_port

    @property
    def health_port(self) -> int:
        return self._ops.health_port

    def _on_store_state(self, state: StoreState) -> None:
        """A store that cannot write makes the server NOT_SERVING (and SERVING again once writes
        commit); after the graceful shutdown began, health ignores these."""
        ok = health_pb2.HealthCheckResponse.SERVING
        status = ok if state is StoreState.OK else health_pb2.HealthCheckResponse.NOT_SERVING

        async def apply() -> None:
            for name in ("", *SERVICE_NAMES):
                await self._health.set(name, status)

        task = asyncio.ensure_future(apply())
        self._health_updates.add(task)
        task.add_done_callback(self._health_updates.discard)

    async def stop(self, grace_s: float = 5.0) -> None:
        """Idempotent; concurrent callers wait for the first."""
        if self._stopping is None:
            self._stopping = asyncio.ensure_future(self._stop(grace_s))
        await asyncio.shield(self._stopping)

    async def _stop(self, grace_s: float) -> None:
        await self._health.enter_graceful_shutdown()
        try:
            await self.runtime.close(grace_s)
        finally:
            try:
                await self._server.stop(grace_s)
            finally:
                await self._ops.stop()

    async def wait(self) -> None:
        await self._server.wait_for_termination()


async def start_server(
    runtime: Runtime,
    listen: str = "127.0.0.1:0",
    *,
    auth_token: str | None = None,
    tls: TLSFiles | None = None,
    ops: OpsOptions | None = None,
) -> RuntimeServer:
    """Start the Runtime (if needed) and serve it; returns the running server (see ``.port``)."""
    server = RuntimeServer(runtime, auth_token=auth_token, tls=tls, ops=ops)
    await server.start(listen)
    return server
