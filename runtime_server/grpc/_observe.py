"""What operators see of each call: go-grpc-prometheus' counters (kept as plain integers here,
exported by :mod:`._metrics` at scrape time) and the access log (one line per RPC: INFO when it
succeeded, WARNING with the error's reason when not; calls refused before they were
authenticated or decoded are only counted — see :class:`RefusedCalls` — because an anonymous
caller must not be able to flood the log).

:class:`Observer` builds one wrapper per method, once, when the edge's router (:mod:`._edge`)
registers the method — and one per deny handler of auth — so it sees every call the server
routes to a handler: calls auth denies and requests the decode guard rejects included (the
guard's check is done inside the same wrapper). It runs the handler inside the call's log context
(:mod:`runtime_server.logcontext`: the request's ``worker_id``, ``run_id`` and ``request_id``,
and the method), so every line logged during the call names them. A method of a service the
server does not have is counted under ``unknown`` (callers choose method names: they must not
choose label values).

Cost: built only when metrics or the access log are on; per call one coroutine (no interceptor,
no closure built), four context variables, a few attribute updates and one ``perf_counter``
pair; per streamed message one generator hop and one addition.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import inspect
import logging
import time
from bisect import bisect_left
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Protocol

import grpc
from google.rpc import error_details_pb2, status_pb2

from runtime_server import logcontext
from runtime_server.grpc._decoding import Undecodable, reject, safe_deserializer
from runtime_server.grpc._ids import id_reader, safe_id

access_log = logging.getLogger("runtime_server.access")

# Prometheus' default buckets (go-grpc-prometheus uses them for grpc_server_handling_seconds).
DEFAULT_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACCESS_LOG_MODES = ("all", "errors", "off")
MAX_METHODS = 256  # distinct (service, method) series; beyond it calls count as "unknown"
_OK = "OK"
# Calls refused before they were authenticated or decoded cost an anonymous caller nothing: they
# get no line each (anyone could flood the log), only counts — in the metrics, and in at most one
# WARNING line per window here (undecodable ones: the decode guard's own line, runtime_server.grpc.
# _decoding).
REFUSED_WINDOW_S = 60.0
MAX_LOGGED_METHOD = 200  # characters of a method name in that line (an unknown one: the caller's)


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
        if len(method) > MAX_LOGGED_METHOD:
            method = method[:MAX_LOGGED_METHOD] + "..."
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


class _End(Protocol):
    """How a call's wrapper reports its end (:meth:`Observer._end` or ``_end_refused``)."""

    def __call__(
        self,
        stats: MethodStats | None,
        method: str,
        start: float,
        context: Any,
        exc: BaseException | None,
        response: Any = None,
    ) -> None: ...


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


class Observer:
    """Builds the one wrapper of each method (:meth:`wrap`, called once per method by the edge's
    router, :mod:`._edge`): the decode guard's check, the call's log context, the counters and
    the access line, in one coroutine or async generator around the servicer's own wrapper."""

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

    def wrap(
        self, method: str, handler: grpc.RpcMethodHandler, *, refused: bool = False
    ) -> grpc.RpcMethodHandler:
        """``handler`` observed and, when it decodes its requests, guarded (:mod:`._decoding`);
        one that is not a coroutine or an async generator is returned as it is. ``refused``:
        auth's deny handler, whose calls are counted but get no access line of their own."""
        known = method.lstrip("/").partition("/")[0] in self._known
        end = self._end_refused if refused else self._end
        deserializer = handler.request_deserializer
        check = deserializer is not None
        kw = {
            "request_deserializer": safe_deserializer(deserializer) if check else None,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            if not inspect.iscoroutinefunction(handler.unary_unary):
                return handler
            ids = id_reader(deserializer)
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, known, end, handler.unary_unary, check, ids), **kw
            )
        if handler.unary_stream is not None:
            if not inspect.isasyncgenfunction(handler.unary_stream):
                return handler
            ids = id_reader(deserializer)
            return grpc.unary_stream_rpc_method_handler(
                self._streaming(method, known, end, handler.unary_stream, check, ids), **kw
            )
        if handler.stream_unary is not None:
            if not inspect.iscoroutinefunction(handler.stream_unary):
                return handler
            return grpc.stream_unary_rpc_method_handler(
                self._client_stream(method, known, end, handler.stream_unary, check), **kw
            )
        if handler.stream_stream is None or not inspect.isasyncgenfunction(handler.stream_stream):
            return handler
        return grpc.stream_stream_rpc_method_handler(
            self._streaming(method, known, end, handler.stream_stream, check, None), **kw
        )

    # --- per call ---

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

    def _end_refused(
        self,
        stats: MethodStats | None,
        method: str,
        start: float,
        context: Any,
        exc: BaseException | None,
        response: Any = None,
    ) -> None:
        """A call auth refused: counted, but never a line of its own, whatever status it ended
        with (an anonymous caller chooses the method name: before, one whose call did not end
        UNAUTHENTICATED — a 15 KB method name ends UNKNOWN — got a WARNING line per call)."""
        if stats is not None:
            code = _code_name(context, exc)
            stats.handled[code] = stats.handled.get(code, 0) + 1
            stats.seconds.observe(time.perf_counter() - start)
        if self._access != "off" and access_log.isEnabledFor(logging.WARNING):
            self._refused(method)

    def _unary(
        self,
        method: str,
        known: bool,
        end: _End,
        behaviour: Callable[[Any, Any], Awaitable[Any]],
        check: bool,
        ids: Callable[[Any], tuple[str, ...]],
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        stats = self.stats.method(method, "unary", known) if self.stats is not None else None

        async def unary(request: Any, context: Any) -> Any:
            worker_id, run_id, request_id = ids(request)
            t_rpc = _rpc.set(method)
            t_worker = _worker.set(worker_id)
            t_run = _run.set(run_id)
            t_request = _request.set(request_id)
            start = _clock()
            if stats is not None:
                stats.started += 1
                stats.received += 1
            try:
                if check and request.__class__ is Undecodable:
                    await reject(context, method, request)
                response = await behaviour(request, context)
            except BaseException as exc:
                end(stats, method, start, context, exc)
                raise
            else:
                if stats is not None:
                    stats.sent += 1
                end(stats, method, start, context, None, response)
                return response
            finally:
                _request.reset(t_request)
                _run.reset(t_run)
                _worker.reset(t_worker)
                _rpc.reset(t_rpc)

        return unary

    def _requests(
        self, method: str, stats: MethodStats | None, check: bool
    ) -> Callable[[AsyncIterator[Any], Any], AsyncIterator[Any]] | None:
        """The request stream of a client- or bidi-streaming call: each message counted, then
        checked (None: neither is needed)."""
        if stats is None and not check:
            return None

        async def requests_of(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
            async for request in requests:
                if stats is not None:
                    stats.received += 1
                if check and request.__class__ is Undecodable:
                    await reject(context, method, request)
                yield request

        return requests_of

    def _client_stream(
        self,
        method: str,
        known: bool,
        end: _End,
        behaviour: Callable[[Any, Any], Awaitable[Any]],
        check: bool,
    ) -> Callable[[Any, Any], Awaitable[Any]]:
        stats = self.stats.method(method, "client_stream", known) if self.stats else None
        requests_of = self._requests(method, stats, check)

        async def client_stream(requests: Any, context: Any) -> Any:
            t_rpc = _rpc.set(method)
            start = _clock()
            if stats is not None:
                stats.started += 1
            if requests_of is not None:
                requests = requests_of(requests, context)
            try:
                response = await behaviour(requests, context)
            except BaseException as exc:
                end(stats, method, start, context, exc)
                raise
            else:
                if stats is not None:
                    stats.sent += 1
                end(stats, method, start, context, None)
                return response
            finally:
                _rpc.reset(t_rpc)

        return client_stream

    def _streaming(
        self,
        method: str,
        known: bool,
        end: _End,
        behaviour: Callable[[Any, Any], AsyncIterator[Any]],
        check: bool,
        ids: Callable[[Any], tuple[str, ...]] | None,
    ) -> Callable[[Any, Any], AsyncIterator[Any]]:
        """A server stream (``ids``: its one request's reader) or a bidi one (None: its requests
        are counted and checked one by one)."""
        type_ = "bidi_stream" if ids is None else "server_stream"
        stats = self.stats.method(method, type_, known) if self.stats else None
        requests_of = self._requests(method, stats, check) if ids is None else None
        check_one = check and ids is not None

        async def streaming(request: Any, context: Any) -> AsyncIterator[Any]:
            if ids is None:
                tokens: tuple[contextvars.Token[str], ...] = (_rpc.set(method),)
                if requests_of is not None:
                    request = requests_of(request, context)
            else:
                worker_id, run_id, request_id = ids(request)
                tokens = (
                    _rpc.set(method),
                    _worker.set(worker_id),
                    _run.set(run_id),
                    _request.set(request_id),
                )
            start = _clock()
            if stats is not None:
                stats.started += 1
                if ids is not None:
                    stats.received += 1
            try:
                if check_one and request.__class__ is Undecodable:
                    await reject(context, method, request)
                if stats is None:
                    async for response in behaviour(request, context):
                        yield response
                else:
                    async for response in behaviour(request, context):
                        stats.sent += 1
                        yield response
            except BaseException as exc:
                end(stats, method, start, context, exc)
                raise
            else:
                end(stats, method, start, context, None)
            finally:
                _reset(tokens)

        return streaming


_rpc = logcontext.rpc
_worker = logcontext.worker_id
_run = logcontext.run_id
_request = logcontext.request_id
_clock = time.perf_counter


def _reset(tokens: tuple[contextvars.Token[str], ...]) -> None:
    for token in reversed(tokens):
        # a generator closed from another context cannot reset: nothing to undo there
        with contextlib.suppress(ValueError):
            token.var.reset(token)
