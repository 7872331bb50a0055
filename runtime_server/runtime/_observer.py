"""What the Runtime tells an operator's metrics, without knowing any metrics library.

The core stays free of prometheus (and grpc): it exposes

- :class:`RuntimeObserver`, a small protocol the Runtime calls for *events* worth a histogram or
  a labelled counter — a run finished, a diagnostic recorded, a provider request ended, the store
  committed a group of events. Each call happens at most once per run, per model request or per
  commit report, never per streamed delta; with no observer set (the default, and embedded use)
  each hook costs one ``is None`` test.
- :class:`RuntimeCounters`, plain integers read at scrape time (events committed since start,
  subscribers cut by reason), which cost nothing on the event path: events committed is the
  committed seq minus the seq at start.

Gauges (workers by state, active and queued runs, seqs, subscribers) are read from
:meth:`Runtime.info` at scrape time. The adapter to Prometheus lives at the server edge
(``runtime_server.grpc``), which is where the scrape endpoint is served.

Labels are bounded sets on purpose: states, levels, codes, provider kinds and configured models;
never a worker, run or request id.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Protocol

import engine

# Why a provider request ended, when it ended without an engine error code.
OUTCOME_OK = "ok"
OUTCOME_CANCELLED = "cancelled"
OUTCOME_ERROR = "error"  # an exception that is not an engine error (a bug)


class RuntimeObserver(Protocol):
    """Hooks the Runtime calls on the event loop. Implementations must be cheap and never raise."""

    def run_finished(self, state: str, duration_s: float | None) -> None:
        """A run reached terminal ``state``; ``duration_s`` from start (None: it never started)."""

    def diagnostic(self, level: str, code: str) -> None: ...

    def provider_request(
        self, provider: str, model: str, outcome: str, duration_s: float, first_byte_s: float | None
    ) -> None:
        """One model request ended: ``outcome`` is ``ok``, ``cancelled``, an engine error code
        (``PROVIDER_HTTP_ERROR``…) or ``error``; ``first_byte_s`` is the time to its first stream
        event (None: there was none)."""

    def tokens(self, provider: str, model: str, usage: engine.Usage) -> None:
        """The final usage of one model request."""

    def commit(self, latency_s: float, events: int) -> None:
        """The store reported a commit: ``events`` became visible, the oldest of them
        ``latency_s`` after it was appended."""


@dataclass(frozen=True, slots=True)
class RuntimeCounters:
    """Monotonic counters since this process started the Runtime."""

    events_committed: int
    subscriber_cuts: Mapping[str, int]  # reason -> subscriptions the runtime ended


class MeteredProvider:
    """A provider whose requests are reported to an observer: outcome, duration, time to the first
    stream event and the request's final token usage. Adds one async-generator hop per stream
    event; used only when an observer is set."""

    def __init__(self, inner: engine.Provider, observer: RuntimeObserver) -> None:
        self._inner = inner
        self._observer = observer

    @property
    def kind(self) -> str:
        return self._inner.kind

    async def stream(self, request: engine.ModelRequest) -> AsyncIterator[engine.StreamEvent]:
        start = time.perf_counter()
        first: float | None = None
        usage: engine.Usage | None = None
        stopped = False
        outcome = OUTCOME_CANCELLED
        inner = self._inner.stream(request)
        try:
            async for event in inner:
                if first is None:
                    first = time.perf_counter() - start
                if isinstance(event, engine.UsageUpdate):
                    usage = event.usage  # cumulative: the last one wins
                elif isinstance(event, engine.StreamStop):
                    stopped = True
                yield event
            outcome = OUTCOME_OK
        except engine.EngineError as exc:
            outcome = exc.code
            raise
        except (asyncio.CancelledError, GeneratorExit):
            # the consumer stopped reading: after the stop event that is a normal end
            outcome = OUTCOME_OK if stopped else OUTCOME_CANCELLED
            raise
        except Exception:
            outcome = OUTCOME_ERROR
            raise
        finally:
            aclose = getattr(inner, "aclose", None)
            if aclose is not None:
                await aclose()  # the provider closes its HTTP stream (the Provider contract)
            kind, model = self._inner.kind, request.model
            try:
                self._observer.provider_request(
                    kind, model, outcome, time.perf_counter() - start, first
                )
                if usage is not None:
                    self._observer.tokens(kind, model, usage)
            except Exception:  # metrics must never break a run
                pass

    async def aclose(self) -> None:
        await self._inner.aclose()
