"""One grpc.aio server interceptor for what operators see of each call: go-grpc-prometheus'
counters (kept as plain integers here, exported by :mod:`._metrics` at scrape time) and the
access log (one line per RPC: INFO when it succeeded, WARNING with the error's reason when not;
calls refused before they were authenticated or decoded are only counted — see
:class:`RefusedCalls` — because an anonymous caller must not be able to flood the log).

It is the outermost interceptor, so it sees every call the server routes to a handler — calls the
auth interceptor denies and requests the decode guard rejects included — and it runs the handler
inside the call's log context (:mod:`runtime_server.logcontext`: the request's ``worker_id``,
``run_id`` and ``request_id``, and the method), so every line logged during the call names them.
A method the server does not have is counted under ``unknown`` (callers choose method names: they
must not choose label values).

Cost: installed only when metrics or the access log are on; per call a few attribute updates and
one ``perf_counter`` pair, per streamed message one generator hop and one addition.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import re
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from runtime_server import logcontext

access_log = logging.getLogger("runtime_server.access")

# Prometheus' default buckets (go-grpc-prometheus uses them for grpc_server_handling_seconds).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCESS_LOG_MODES = ("all", "errors", "off")
MAX_METHODS = 256  # distinct (service, method) series; beyond it calls count as "unknown"
# Ids from a request are logged only when they look like ids: a caller must not be able to write
# arbitrary text (newlines, escapes, megabytes) into the log through a field we echo.
_SAFE_ID = re.compile(r"[A-Za-z0-9._:@/+=-]{1,128}")
_OK = "OK"
# Calls refused before they were authenticated or decoded cost an anonymous caller nothing: they
# get no line each (anyone could flood the log), only counts — in the metrics, and in at most one
# WARNING line per window here (undecodable ones: the decode guard's own line, runtime_server.grpc.
# _decoding).
REFUSED_WINDOW_S = 60.0


class RefusedCalls:
    """At most one line per ``window_s`` about unauthenticated calls, counting the ones since."""

    def __init__(self, window_s: float = REFUSED_WINDOW_S) -> None:
        self._window = window_s
        self._next = 0.0
        self._count = 0

    def __call__(self, method: str) -> None:
        self._count += 1
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._window
        count, self._count = self._count, 0
        access_log.warning(
            "%d call(s) refused UNAUTHENTICATED (missing or invalid bearer token), the latest to "
            "%s; at most one such line per %.0f s",
            count,
            method,
            self._window,
            extra={"grpc_code": "UNAUTHENTICATED", "reason": "UNAUTHENTICATED"},
        )


class Histogram:
    """A cumulative-bucket histogram without locks: observed and read on the event loop only."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: Sequence[float] = DEFAULT_BUCKETS) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last one is +Inf
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bucket i counts values <= bounds[i] (Prometheus' "le"): the first bound >= value
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def buckets(self) -> list[tuple[str, float]]:
        out: list[tuple[str, float]] = []
        total = 0
        for bound, count in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += count
            out.append(("+Inf" if bound == float("inf") else repr(bound), float(total)))
        return out


class MethodStats:
    __slots__ = ("handled", "method", "received", "seconds", "sent", "service", "started", "type")

    def __init__(self, type_: str, service: str, method: str) -> None:
        self.type = type_
        self.service = service
        self.method = method
        self.started = 0
        self.received = 0
        self.sent = 0
        self.handled: dict[str, int] = {}
        self.seconds = Histogram()


class RpcStats:
    """Every method's counters, keyed by the full method name."""

    def __init__(self) -> None:
        self.methods: dict[str, MethodStats] = {}

    def method(self, full: str, type_: str, known: bool) -> MethodStats:
        stats = self.methods.get(full)
        if stats is None:
            if known and len(self.methods) < MAX_METHODS:
                service, _, name = full.lstrip("/").partition("/")
            else:
                full, service, name = f"unknown:{type_}", "unknown", "unknown"
                stats = self.methods.get(full)
                if stats is not None:
                    return stats
            stats = self.methods[full] = MethodStats(type_, service, name)
        return stats


def safe_id(value: object) -> str:
    return value if isinstance(value, str) and _SAFE_ID.fullmatch(value) else ""


def _code_name(context: Any, exc: BaseException | None) -> str:
    if exc is None or isinstance(exc, grpc.aio.AbortError):
        code = context.code()
        if code is None:
            return _OK if exc is None else "UNKNOWN"
        return str(code.name) if isinstance(code, grpc.StatusCode) else str(code)
    if isinstance(exc, (asyncio.CancelledError, GeneratorExit)):
        return "CANCELLED"  # the client went away (or the server is stopping)
    return "UNKNOWN"  # grpc answers an unhandled exception with UNKNOWN


def _reason(context: Any) -> str:
    """The ErrorInfo reason our errors carry in ``grpc-status-details-bin`` (only on errors)."""
    try:
        for key, value in context.trailing_metadata() or ():
            if key == "grpc-status-details-bin":
                status = status_pb2.Status.FromString(value)
                for detail in status.details:
                    info = error_details_pb2.ErrorInfo()
                    if detail.Unpack(info):
                        return str(info.reason)
    except Exception:  # a reason is a courtesy: never fail the call's accounting over it
        return ""
    return ""


class ObservingInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(
        self,
        known_services: Iterable[str],
        *,
        stats: RpcStats | None = None,
        access: str = "off",
    ) -> None:
        if access not in ACCESS_LOG_MODES:
            raise ValueError(f"access log mode must be one of {ACCESS_LOG_MODES}, not {access!r}")
        self._known = frozenset(known_services)
        self.stats = stats
        self._access = access
        self._refused = RefusedCalls()
        # method -> (the handler it routed to, our wrapper of it): a method's handler is the same
        # object call after call, so its wrapper is built once, not per call (a deny handler of
        # the auth interceptor differs: it is wrapped afresh). At most one entry per method the
        # server has (calls to others have no handler).
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        method: str = handler_call_details.method
        cached = self._wrapped.get(method)
        if cached is not None and cached[0] is handler:
            return cached[1]
        wrapped = self._wrap(method, handler)
        if len(self._wrapped) < MAX_METHODS:
            self._wrapped[method] = (handler, wrapped)
        return wrapped

    def _wrap(self, method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
        known = method.lstrip("/").partition("/")[0] in self._known
        kw = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            if not inspect.iscoroutinefunction(handler.unary_unary):
                return handler
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, known, handler.unary_unary), **kw
            )
        if handler.unary_stream is not None:
            if not inspect.isasyncgenfunction(handler.unary_stream):
                return handler
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, known, "server_stream", handler.unary_stream, False), **kw
            )
        if handler.stream_unary is not None:
            if not inspect.iscoroutinefunction(handler.stream_unary):
                return handler
            return grpc.stream_unary_rpc_method_handler(
                self._client_stream(method, known, handler.stream_unary), **kw
            )
        if handler.stream_stream is None or not inspect.isasyncgenfunction(handler.stream_stream):
            return handler
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, known, "bidi_stream", handler.stream_stream, True), **kw
        )

    # --- per call ---

    def _begin(self, method: str, request: Any) -> tuple[float, list[Any]]:
        tokens = [logcontext.rpc.set(method)]
        if request is not None:
            tokens.append(logcontext.worker_id.set(safe_id(getattr(request, "worker_id", ""))))
            tokens.append(logcontext.run_id.set(safe_id(getattr(request, "run_id", ""))))
            tokens.append(logcontext.request_id.set(safe_id(getattr(request, "request_id", ""))))
        return time.perf_counter(), tokens

    def _end(
        self,
        stats: MethodStats | None,
        method: str,
        start: float,
        context: Any,
        exc: BaseException | None,
        response: Any = None,
    ) -> None:
        seconds = time.perf_counter() - start
        code = _code_name(context, exc)
        if stats is not None:
            stats.handled[code] = stats.handled.get(code, 0) + 1
            stats.seconds.observe(seconds)
        access = self._access
        if access == "off" or (code == _OK and access == "errors"):
            return
        quiet = code == _OK or code == "CANCELLED"
        if quiet and not access_log.isEnabledFor(logging.INFO):
            return  # no line to write (serve's --log-level WARNING): nothing to prepare for one
        if response is not None:  # ids the call created: CreateWorker's worker, SendInput's run
            for name, var in (("worker", logcontext.worker_id), ("run", logcontext.run_id)):
                if not var.get():
                    made = getattr(response, name, None)
                    made_id = getattr(made, f"{name}_id", "") if made is not None else ""
                    if made_id:
                        var.set(safe_id(made_id))
        duration_ms = round(seconds * 1000.0, 3)
        extra: dict[str, Any] = {"grpc_code": code, "duration_ms": duration_ms}
        if quiet:
            access_log.info("%s %s %.1fms", method, code, duration_ms, extra=extra)
            return
        if not access_log.isEnabledFor(logging.WARNING):
            return
        reason = _reason(context)
        if code == "UNAUTHENTICATED":
            self._refused(method)
            return
        if reason == "MALFORMED_REQUEST":
            return  # the decode guard logs these, rate-limited
        extra["reason"] = reason
        details = context.details() if exc is not None else ""
        access_log.warning(
            "%s %s %.1fms%s%s",
            method,
            code,
            duration_ms,
            f" reason={reason}" if reason else "",
            f": {details}" if details else "",
            extra=extra,
        )

    def _unary(
        self, method: str, known: bool, behaviour: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        stats = self.stats.method(method, "unary", known) if self.stats is not None else None

        async def unary(request: Any, context: Any) -> Any:
            start, tokens = self._begin(method, request)
            if stats is not None:
                stats.started += 1
                stats.received += 1
            try:
                response = await behaviour(request, context)
            except BaseException as exc:
                self._end(stats, method, start, context, exc)
                raise
            else:
                if stats is not None:
                    stats.sent += 1
                self._end(stats, method, start, context, None, response)
                return response
            finally:
                for token in reversed(tokens):
                    token.var.reset(token)

        return unary

    def _counted(
        self, stats: MethodStats | None, requests: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        if stats is None:
            return requests

        async def counted() -> AsyncIterator[Any]:
            async for request in requests:
                stats.received += 1
                yield request

        return counted()

    def _client_stream(
        self, method: str, known: bool, behaviour: Callable[[Any, Any], Awaitable[Any]]
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        stats = self.stats.method(method, "client_stream", known) if self.stats else None

        async def client_stream(requests: Any, context: Any) -> Any:
            start, tokens = self._begin(method, None)
            if stats is not None:
                stats.started += 1
            try:
                response = await behaviour(self._counted(stats, requests), context)
            except BaseException as exc:
                self._end(stats, method, start, context, exc)
                raise
            else:
                if stats is not None:
                    stats.sent += 1
                self._end(stats, method, start, context, None)
                return response
            finally:
                for token in reversed(tokens):
                    token.var.reset(token)

        return client_stream

    def _streaming(
        self,
        method: str,
        known: bool,
        type_: str,
        behaviour: Callable[[Any, Any], AsyncIterator[Any]],
        client_streams: bool,
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        stats = self.stats.method(method, type_, known) if self.stats is not None else None

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            start, tokens = self._begin(method, None if client_streams else request)
            if stats is not None:
                stats.started += 1
                if client_streams:
                    request = self._counted(stats, request)
                else:
                    stats.received += 1
            try:
                if stats is None:
                    async for response in behaviour(request, context):
                        yield response
                else:
                    async for response in behaviour(request, context):
                        stats.sent += 1
                        yield response
            except BaseException as exc:
                self._end(stats, method, start, context, exc)
                raise
            else:
                self._end(stats, method, start, context, None)
            finally:
                for token in reversed(tokens):
                    # a generator closed from another context cannot reset: nothing to undo there
                    with contextlib.suppress(ValueError):
                        token.var.reset(token)

        return streaming
