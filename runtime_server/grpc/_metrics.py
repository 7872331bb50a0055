"""Prometheus metrics for ``serve --metrics-listen``: collected at scrape time, on a registry of
our own (never prometheus_client's global one, so an embedding application's metrics and ours
never mix).

Nothing here sits on the event path. The gRPC edge's observer (:mod:`._observe`) and the Runtime
(:class:`runtime_server.runtime.RuntimeObserver`) count into plain integers and the small
:class:`Histogram` below (one ``bisect`` and two additions per observation, on the event loop);
:class:`RuntimeCollector` and :class:`GrpcCollector` turn them, and the Runtime's gauges
(``Runtime.info()``), into metric families when Prometheus scrapes. The scrape itself is served
by :mod:`._ops` on the event loop, so collection never races the loop's own updates.

Names: the gRPC server metrics are go-grpc-prometheus's (``grpc_server_*``, labelled
``grpc_type``/``grpc_service``/``grpc_method`` and ``grpc_code``), so existing dashboards work;
the domain metrics are prefixed ``worker_runtime_``. No label ever carries a worker, run or
request id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client import CONTENT_TYPE_LATEST, ProcessCollector, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector, CollectorRegistry

import engine
from runtime_server.grpc._observe import Histogram, RpcStats
from runtime_server.runtime import Runtime, RuntimeState

RUN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0, 3600.0)
FIRST_BYTE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
COMMIT_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
BATCH_BUCKETS = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0)
TOKEN_KINDS = ("input", "output", "cache_read", "cache_write", "reasoning")
# A model name is a label value a caller can choose (a config bundle's profile names any model
# string): before, each new one added ~20 series for good (the bundle deleted or not), so a
# caller could grow the scrape and the process without bound. Past these, it counts as "other".
MAX_MODEL_SERIES = 64  # distinct (provider, model) pairs
MAX_MODEL_LABEL_CHARS = 128
OTHER_MODEL = "other"


class PrometheusObserver:
    """The Runtime's observer (``RuntimeObserver``): counts what the Runtime reports."""

    def __init__(self) -> None:
        self.runs: dict[str, int] = {}
        self.run_seconds = Histogram(RUN_BUCKETS)
        self.diagnostics: dict[tuple[str, str], int] = {}
        self.provider_requests: dict[tuple[str, str, str], int] = {}
        self.first_byte: dict[tuple[str, str], Histogram] = {}
        self.tokens_by: dict[tuple[str, str, str], int] = {}
        self.commit_seconds = Histogram(COMMIT_BUCKETS)
        self.commit_events = Histogram(BATCH_BUCKETS)
        self._models: set[tuple[str, str]] = set()

    def _model(self, provider: str, model: str) -> str:
        """``model`` as a label value: itself while few enough are in use, else ``other``."""
        if (provider, model) in self._models:
            return model
        if len(model) > MAX_MODEL_LABEL_CHARS or len(self._models) >= MAX_MODEL_SERIES:
            return OTHER_MODEL
        self._models.add((provider, model))
        return model

    def run_finished(self, state: str, duration_s: float | None) -> None:
        self.runs[state] = self.runs.get(state, 0) + 1
        if duration_s is not None:
            self.run_seconds.observe(max(0.0, duration_s))

    def diagnostic(self, level: str, code: str) -> None:
        key = (level, code)
        self.diagnostics[key] = self.diagnostics.get(key, 0) + 1

    def provider_request(
        self, provider: str, model: str, outcome: str, duration_s: float, first_byte_s: float | None
    ) -> None:
        model = self._model(provider, model)
        key = (provider, model, outcome)
        self.provider_requests[key] = self.provider_requests.get(key, 0) + 1
        if first_byte_s is not None:
            hist = self.first_byte.get((provider, model))
            if hist is None:
                hist = self.first_byte[(provider, model)] = Histogram(FIRST_BYTE_BUCKETS)
            hist.observe(first_byte_s)

    def tokens(self, provider: str, model: str, usage: engine.Usage) -> None:
        model = self._model(provider, model)
        for kind in TOKEN_KINDS:
            n = getattr(usage, f"{kind}_tokens", 0)
            if n:
                key = (provider, model, kind)
                self.tokens_by[key] = self.tokens_by.get(key, 0) + n

    def commit(self, latency_s: float, events: int) -> None:
        self.commit_seconds.observe(max(0.0, latency_s))
        self.commit_events.observe(events)


def _histogram(
    name: str, doc: str, labels: Sequence[str], series: Iterator[tuple[Sequence[str], Histogram]]
) -> HistogramMetricFamily:
    family = HistogramMetricFamily(name, doc, labels=list(labels))
    for values, hist in series:
        family.add_metric(list(values), hist.buckets(), hist.sum)
    return family


def _counter(
    name: str, doc: str, labels: Sequence[str], series: Iterator[tuple[Sequence[str], float]]
) -> CounterMetricFamily:
    family = CounterMetricFamily(name, doc, labels=list(labels))
    for values, value in series:
        family.add_metric(list(values), value)
    return family


class RuntimeCollector(Collector):
    """``worker_runtime_*``: gauges from ``Runtime.info()``, counters and histograms from the
    Runtime's counters and its :class:`PrometheusObserver`."""

    def __init__(self, runtime: Runtime, observer: PrometheusObserver) -> None:
        self._runtime = runtime
        self._obs = observer

    def describe(self) -> list[Metric]:
        return []  # collected only at scrape time (the runtime may not be started yet)

    def collect(self) -> Iterator[Metric]:
        rt, obs = self._runtime, self._obs
        state = GaugeMetricFamily(
            "worker_runtime_state", "1 for the Runtime's current state", labels=["state"]
        )
        for s in RuntimeState:
            state.add_metric([s.value], 1.0 if rt.state is s else 0.0)
        yield state
        if rt.state is RuntimeState.STARTING or not rt.runtime_id:
            return  # nothing else exists before the store is open
        info = rt.info()
        counters = rt.counters()
        meta = GaugeMetricFamily(
            "worker_runtime_info",
            "The Runtime this process serves (value 1)",
            labels=["runtime_id", "version", "store"],
        )
        meta.add_metric([info.runtime_id, info.version, info.store_kind], 1.0)
        yield meta
        yield GaugeMetricFamily(
            "worker_runtime_start_time_seconds", "When the Runtime started serving (unix time)",
            value=info.started_at,
        )  # fmt: skip
        workers = GaugeMetricFamily("worker_runtime_workers", "Workers by state", labels=["state"])
        for ws, n in sorted(info.workers_by_state.items(), key=lambda kv: kv[0].value):
            workers.add_metric([ws.value], float(n))
        yield workers
        yield GaugeMetricFamily(
            "worker_runtime_runs_active", "Runs running now", value=info.active_runs
        )
        yield GaugeMetricFamily(
            "worker_runtime_runs_queued",
            "Runs waiting behind a busy worker",
            value=info.queued_runs,
        )
        yield _counter(
            "worker_runtime_runs_finished",
            "Runs that reached a terminal state in this process, by state",
            ["state"],
            (((s,), float(n)) for s, n in sorted(obs.runs.items())),
        )
        yield _histogram(
            "worker_runtime_run_duration_seconds",
            "From a run's start to its end",
            [],
            iter([((), obs.run_seconds)]),
        )
        yield CounterMetricFamily(
            "worker_runtime_events_committed",
            "Events committed to the event log by this process",
            value=counters.events_committed,
        )
        yield GaugeMetricFamily(
            "worker_runtime_last_seq", "The committed head of the event log", value=info.last_seq
        )
        yield GaugeMetricFamily(
            "worker_runtime_oldest_seq",
            "The oldest retained event (0: none)",
            value=info.oldest_seq,
        )
        yield GaugeMetricFamily(
            "worker_runtime_subscribers", "Open event subscriptions", value=info.subscribers
        )
        yield _counter(
            "worker_runtime_subscriber_cuts",
            "Subscriptions the Runtime ended, by reason (lagging: fell a buffer behind)",
            ["reason"],
            (((r,), float(n)) for r, n in sorted(counters.subscriber_cuts.items())),
        )
        yield _counter(
            "worker_runtime_provider_requests",
            "Model requests by provider kind, model and outcome",
            ["provider", "model", "outcome"],
            ((k, float(n)) for k, n in sorted(obs.provider_requests.items())),
        )
        yield _histogram(
            "worker_runtime_provider_first_byte_seconds",
            "From a model request to its first stream event",
            ["provider", "model"],
            iter(sorted(obs.first_byte.items())),
        )
        yield _counter(
            "worker_runtime_tokens",
            "Tokens by provider kind, model and kind (input, output, cache_read, ...)",
            ["provider", "model", "kind"],
            ((k, float(n)) for k, n in sorted(obs.tokens_by.items())),
        )
        yield _histogram(
            "worker_runtime_store_commit_seconds",
            "From appending an event to its commit being reported (oldest event of each commit)",
            [],
            iter([((), obs.commit_seconds)]),
        )
        yield _histogram(
            "worker_runtime_store_commit_events",
            "Events made visible per commit report",
            [],
            iter([((), obs.commit_events)]),
        )
        yield _counter(
            "worker_runtime_diagnostics",
            "Diagnostics recorded, by level and code",
            ["level", "code"],
            ((k, float(n)) for k, n in sorted(obs.diagnostics.items())),
        )


class GrpcCollector(Collector):
    """go-grpc-prometheus' server metrics from the observer's :class:`RpcStats`."""

    def __init__(self, stats: RpcStats) -> None:
        self._stats = stats

    def describe(self) -> list[Metric]:
        return []

    def collect(self) -> Iterator[Metric]:
        labels = ["grpc_type", "grpc_service", "grpc_method"]
        methods = sorted(self._stats.methods.values(), key=lambda m: (m.service, m.method))
        started = CounterMetricFamily(
            "grpc_server_started", "Total number of RPCs started on the server.", labels=labels
        )
        handled = CounterMetricFamily(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            labels=[*labels, "grpc_code"],
        )
        received = CounterMetricFamily(
            "grpc_server_msg_received",
            "Total number of RPC stream messages received on the server.",
            labels=labels,
        )
        sent = CounterMetricFamily(
            "grpc_server_msg_sent",
            "Total number of gRPC stream messages sent by the server.",
            labels=labels,
        )
        seconds = HistogramMetricFamily(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level "
            "handled by the server.",
            labels=labels,
        )
        for m in methods:
            if not m.started:
                continue  # a method no call reached yet (the router builds each one's at start)
            key = [m.type, m.service, m.method]
            started.add_metric(key, m.started)
            for code, n in sorted(m.handled.items()):
                handled.add_metric([*key, code], n)
            received.add_metric(key, m.received)
            sent.add_metric(key, m.sent)
            seconds.add_metric(key, m.seconds.buckets(), m.seconds.sum)
        yield from (started, handled, received, sent, seconds)


def registry_for(runtime: Runtime, stats: RpcStats) -> CollectorRegistry:
    """A registry of our own with the gRPC, Runtime and process collectors; sets the Runtime's
    observer (so call it before the Runtime starts: an already started Runtime keeps its gauges
    but reports no runs, provider requests, diagnostics or commits)."""
    observer = PrometheusObserver()
    if runtime.state is RuntimeState.STARTING and not runtime.runtime_id:
        runtime.set_observer(observer)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GrpcCollector(stats))
    registry.register(RuntimeCollector(runtime, observer))
    ProcessCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry | None) -> tuple[str, bytes]:
    """(content type, body) of one scrape."""
    if registry is None:
        return "text/plain", b""
    return CONTENT_TYPE_LATEST, generate_latest(registry)
