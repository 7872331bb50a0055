"""The operator's side ports of a served Runtime: the plaintext health port and the metrics
endpoint, and the observer that feeds metrics and the access log (its wrappers: :mod:`._observe`).

- **Health** (``health_listen``): a second grpc.aio server, always plaintext and without auth,
  serving only ``grpc.health.v1.Health`` from the *same* health servicer as the main port, so the
  two never disagree. Kubernetes' native gRPC probes cannot speak TLS; this port lets them check a
  TLS or mTLS server. It listens before the store opens and answers NOT_SERVING until the store
  is open and recovery committed, SERVING while serving, NOT_SERVING again while draining; it
  closes last. Its ``liveness`` service (:data:`LIVENESS_SERVICE`) answers SERVING from the moment
  the port is open until the drain starts, whatever the store does: a liveness probe must ask for
  it, not for ``""`` — a full disk makes ``""`` NOT_SERVING (the runtime still answers reads and
  recovers by itself once space returns), and a liveness probe on ``""`` restarted the container
  over it, into a crash loop while the disk stayed full.
- **Metrics** (``metrics_listen``): ``GET /metrics`` in Prometheus' text format, from a registry
  of our own (:mod:`._metrics`). Served by a minimal HTTP/1.0 responder on the event loop — not
  prometheus_client's threaded server — so a scrape reads the Runtime's state on the loop that
  changes it, never concurrently. No auth: bind it to a private address.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from runtime_server.grpc._connections import connection_options
from runtime_server.grpc._observe import Observer, RpcStats
from runtime_server.runtime import Runtime

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

log = logging.getLogger(__name__)

LIVENESS_SERVICE = "liveness"  # SERVING while the process runs (until the drain): see above
MAX_REQUEST_HEAD = 8192  # bytes of an HTTP request head we read before giving up
HTTP_TIMEOUT_S = 10.0


class OpsListenError(OSError):
    """The metrics or health address cannot be bound (the message names the flag)."""


@dataclass(frozen=True, slots=True)
class OpsOptions:
    """What ``serve`` turns on for operators (all off by default; embedded servers pay nothing)."""

    metrics_listen: str | None = None  # host:port for GET /metrics
    health_listen: str | None = None  # host:port, plaintext grpc.health.v1 only
    access_log: str = "off"  # all | errors | off


class Ops:
    def __init__(
        self,
        runtime: Runtime,
        options: OpsOptions,
        health_servicer: health.aio.HealthServicer,
        service_names: tuple[str, ...],
    ) -> None:
        self._runtime = runtime
        self._options = options
        self._health = health_servicer
        self._service_names = service_names
        self.metrics_port = 0
        self.health_port = 0
        self._stats: RpcStats | None = None
        self._registry: CollectorRegistry | None = None
        # builds each method's observing wrapper (the edge's router, _edge, asks it once a method)
        self.observer: Observer | None = None
        if options.metrics_listen is not None:
            from runtime_server.grpc._metrics import registry_for  # prometheus only when asked

            self._stats = RpcStats()
            self._registry = registry_for(runtime, self._stats)
        if self._stats is not None or options.access_log != "off":
            known = (
                *service_names,
                "grpc.health.v1.Health",
                "grpc.reflection.v1.ServerReflection",
                "grpc.reflection.v1alpha.ServerReflection",
            )
            self.observer = Observer(known, stats=self._stats, access=options.access_log)
        self._health_server: grpc.aio.Server | None = None
        self._http: asyncio.Server | None = None

    async def start_health(self) -> None:
        """Before the Runtime starts: the health port answers NOT_SERVING until it serves."""
        for name in ("", *self._service_names):
            await self._health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        await self._health.set(LIVENESS_SERVICE, health_pb2.HealthCheckResponse.SERVING)
        if self._options.health_listen is None:
            return
        # the same connection bounds as the main port: this one needs no token at all
        limits = connection_options(self._runtime.limits)
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0), *limits])
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        try:
            port = server.add_insecure_port(self._options.health_listen)
        except RuntimeError:  # grpc's "Failed to bind to address ..."
            port = 0
        if port == 0:
            raise OpsListenError(
                f"--health-listen: cannot listen on {self._options.health_listen}: the address "
                "is in use or not available"
            )
        await server.start()
        self._health_server, self.health_port = server, port

    async def start_metrics(self) -> None:
        if self._options.metrics_listen is None:
            return
        host, _, port = self._options.metrics_listen.rpartition(":")
        host = host.strip("[]") or "127.0.0.1"
        try:
            self._http = await asyncio.start_server(self._serve_http, host, int(port))
        except (OSError, ValueError) as exc:
            raise OpsListenError(
                f"--metrics-listen: cannot listen on {self._options.metrics_listen}: {exc}"
            ) from None
        self.metrics_port = self._http.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """After the main server stopped: the metrics endpoint, then the health port."""
        if self._http is not None:
            self._http.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._http.wait_closed(), HTTP_TIMEOUT_S)
            self._http = None
        if self._health_server is not None:
            await self._health_server.stop(0)
            self._health_server = None

    async def _serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), HTTP_TIMEOUT_S)
            if len(head) > MAX_REQUEST_HEAD:
                raise ValueError("request head too large")
            method, target, *_ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
            path = target.split("?", 1)[0]
            if method not in ("GET", "HEAD"):
                status, ctype, body = "405 Method Not Allowed", "text/plain", b"GET only\n"
            elif path != "/metrics":
                status, ctype, body = "404 Not Found", "text/plain", b"see /metrics\n"
            else:
                from runtime_server.grpc._metrics import exposition

                status = "200 OK"
                ctype, body = exposition(self._registry)
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode("latin-1")
            )
            if method != "HEAD":
                writer.write(body)
            await asyncio.wait_for(writer.drain(), HTTP_TIMEOUT_S)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ValueError):
            pass  # a client that did not speak HTTP, or went away: nothing to answer
        except ConnectionError:
            pass
        except Exception:
            log.exception("metrics endpoint failed")
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
