"""The Backend's Prometheus metrics, at ``GET /metrics`` on its own port (no login, like
``/healthz``: a scraper has no session; the Backend binds loopback by default).

On a registry of our own (never prometheus_client's global one). Families:

- ``worker_backend_http_requests_total{method,route,status}`` and
  ``worker_backend_http_request_seconds{method,route}`` (a histogram): every HTTP request, by the
  *route template* it matched (``/api/runtimes/{runtime_id}/workers/{worker_id}/input``), never
  by its path, so no worker, run or runtime id becomes a label; unmatched paths count as
  ``other``. An event stream's duration is how long it stayed open.
- ``worker_backend_console_streams_open``: open console event streams (SSE), over all browsers.
- ``worker_backend_runtime_state{alias,state}``: 1 for each runtime's current registry state, 0
  for the others (so ``== 1`` selects it and a change is a flip, not a new series); labelled by
  the config's alias, never the runtime_id or address.
- ``worker_backend_bundles{alias,state}`` (with ``bundles_dir``): how many of the directory's
  bundles are ``present``, ``pushing``, ``failed`` or ``missing`` on each runtime (no bundle id
  as a label), and ``worker_backend_bundle_puts_total{alias}``: puts sent to each runtime.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runtime_client import RuntimeHealth

if TYPE_CHECKING:
    from backend.service import Backend

__all__ = ["BackendMetrics", "MetricsMiddleware", "metrics_endpoint"]

BUNDLE_STATES = ("present", "pushing", "failed", "missing")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 600.0)


class _StateCollector(Collector):
    def __init__(self, backend: Backend) -> None:
        self._backend = backend

    def collect(self) -> Iterator[Metric]:
        streams = GaugeMetricFamily(
            "worker_backend_console_streams_open", "Open console event streams (SSE)."
        )
        streams.add_metric([], self._backend.streams.open)
        yield streams
        state = GaugeMetricFamily(
            "worker_backend_runtime_state",
            "Each runtime's registry state: 1 for the current one, 0 for the others.",
            labels=["alias", "state"],
        )
        registry = self._backend.registry
        for status in registry.runtimes() if registry is not None else ():
            for health in RuntimeHealth:
                state.add_metric([status.alias, health.value], 1 if status.state is health else 0)
        yield state
        yield from self._bundles()

    def _bundles(self) -> Iterator[Metric]:
        sync, registry = self._backend.bundles, self._backend.registry
        if not sync.enabled or registry is None:
            return
        held = GaugeMetricFamily(
            "worker_backend_bundles",
            "Config bundles of bundles_dir on each runtime, by state.",
            labels=["alias", "state"],
        )
        puts = CounterMetricFamily(
            "worker_backend_bundle_puts",
            "Config bundle puts sent to each runtime.",
            labels=["alias"],
        )
        bundles = [b for b in sync.bundles().values() if b.ok]
        for status in registry.runtimes():
            rid = status.runtime_id
            if not rid:
                continue
            counts = dict.fromkeys(BUNDLE_STATES, 0)
            for b in bundles:
                known = sync.availability(rid, b)
                counts[known.state if known is not None else "missing"] += 1
            for name, n in counts.items():
                held.add_metric([status.alias, name], n)
            puts.add_metric([status.alias], sync.puts.get(rid, 0))
        yield held
        yield puts


class BackendMetrics:
    """The Backend's metrics registry and the request counters the middleware feeds."""

    def __init__(self, backend: Backend) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "worker_backend_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "worker_backend_http_request_seconds",
            "HTTP request duration by route template (an event stream: how long it was open).",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_StateCollector(backend))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


# The methods counted by name; any other (HTTP lets a client send any token) is ``other``, so no
# request, authenticated or not, can add label values (memory, and the scrape's size, unbounded).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _template(routes: Sequence[object], scope: Scope) -> str:
    """The matched route's template; a path matched only by another method's route (a 405)
    counts under that route too; no match is ``other``."""
    partial = "other"
    for route in routes:
        if isinstance(route, Route | Mount):
            match, _ = route.matches(scope)
            template = route.path + ("/{path}" if isinstance(route, Mount) else "")
            if match is Match.FULL:
                return template
            if match is Match.PARTIAL and partial == "other":
                partial = template
    return partial


class MetricsMiddleware:
    """Pure ASGI (streaming responses pass through untouched): counts each request once its
    response has started, times it until the response ends."""

    def __init__(self, app: ASGIApp, *, metrics: BackendMetrics, routes: Sequence[object]) -> None:
        self.app = app
        self._metrics = metrics
        self._routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception before the response started is what the client sees

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            method = str(scope["method"])
            if method not in _METHODS:
                method = "other"  # a client names the method: any string would be a new series
            route = _template(self._routes, scope)
            self._metrics.requests.labels(method, route, str(status)).inc()
            self._metrics.latency.labels(method, route).observe(time.perf_counter() - started)


async def metrics_endpoint(request: Request) -> Response:
    metrics: BackendMetrics = request.app.state.metrics
    return Response(
        metrics.exposition(),
        media_type=CONTENT_TYPE_LATEST,
        headers={"cache-control": "no-store"},
    )
