"""Undecodable requests answer INVALID_ARGUMENT (reason MALFORMED_REQUEST), after auth, quietly.

grpc.aio decodes a request with its handler's ``request_deserializer`` before the handler runs. A
body that is not valid protobuf for the method raised there: grpc answered UNKNOWN ("Unexpected
DecodeError") without an ErrorInfo and logged an ERROR traceback for every such call — anyone
could flood the log, token or not.

The edge (:mod:`._edge`) rewrites each method's handler once, when it is registered:

- its deserializer returns an :class:`Undecodable` marker instead of raising
  (:func:`safe_deserializer`);
- its behaviour checks for the marker first (one class comparison per call or per request
  message) and aborts INVALID_ARGUMENT with ErrorInfo ``MALFORMED_REQUEST`` (:func:`reject`:
  domain ``worker-runtime``, metadata ``field`` and the ``method``). ``field`` is ``request``, or,
  when the body is sound protobuf but a string field's bytes are not UTF-8 (what a client in
  another language can send), that field's path (``workspace.mounts[0].path``): found by walking
  the bytes again, on this error path only (``_wire_utf8``), so decoding costs nothing more.

:func:`guard` is that rewrite alone; with metrics or the access log on, the observing wrapper
(:mod:`._observe`) does the same check inside its own, one wrapper per method either way.

Auth still comes first: the router picks a deny handler before a byte is decoded, and deny
handlers decode nothing (``runtime_server.grpc._auth``). The log gets one WARNING line per
:data:`WARN_EVERY_S` at most, counting the calls it stands for; never a traceback.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from runtime_server import errors
from runtime_server.grpc._errors import abort
from runtime_server.grpc._wire_utf8 import invalid_utf8_field

log = logging.getLogger(__name__)

WARN_EVERY_S = 60.0


class Undecodable:
    """Stands for a request body the method's deserializer refused."""

    __slots__ = ("data", "descriptor", "error")

    def __init__(self, error: Exception, data: bytes, descriptor: Any) -> None:
        self.error = error
        self.data = data  # kept to name the field on the error path (_wire_utf8)
        self.descriptor = descriptor


class _RateLimitedWarning:
    """At most one line per ``every_s``; the next line counts the calls it did not log."""

    def __init__(self, every_s: float = WARN_EVERY_S) -> None:
        self._every = every_s
        self._next = 0.0
        self._suppressed = 0

    def __call__(self, method: str, error: Exception) -> None:
        now = time.monotonic()
        if now < self._next:
            self._suppressed += 1
            return
        self._next = now + self._every
        suppressed, self._suppressed = self._suppressed, 0
        log.warning(
            "undecodable request to %s answered INVALID_ARGUMENT (%s)%s",
            method,
            type(error).__name__,
            f"; {suppressed} more since the last such line" if suppressed else "",
        )


_warn = _RateLimitedWarning()


def safe_deserializer(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    # the message type, for naming a field that is not UTF-8 (a generated FromString is a
    # classmethod of it); looked up once here, used only when decoding failed
    descriptor = getattr(getattr(deserializer, "__self__", None), "DESCRIPTOR", None)

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception as exc:  # DecodeError, or anything a deserializer may raise on bytes
            return Undecodable(exc, data, descriptor)

    return deserialize


async def reject(context: Any, method: str, bad: Undecodable) -> None:
    _warn(method, bad.error)
    field = "" if bad.descriptor is None else invalid_utf8_field(bad.descriptor, bad.data)
    await abort(context, errors.MalformedRequest(method, field or ""))


def guard(method: str, handler: grpc.RpcMethodHandler) -> grpc.RpcMethodHandler:
    deserializer = handler.request_deserializer
    if deserializer is None:
        return handler
    kw = {
        "request_deserializer": safe_deserializer(deserializer),
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary is not None:
        unary_unary = handler.unary_unary
        if not inspect.iscoroutinefunction(unary_unary):
            return handler

        async def unary(request: Any, context: Any) -> Any:
            if request.__class__ is Undecodable:
                await reject(context, method, request)
            return await unary_unary(request, context)

        return grpc.unary_unary_rpc_method_handler(unary, **kw)
    if handler.unary_stream is not None:
        unary_stream = handler.unary_stream
        if not inspect.isasyncgenfunction(unary_stream):
            return handler

        async def server_stream(request: Any, context: Any) -> AsyncIterator[Any]:
            if request.__class__ is Undecodable:
                await reject(context, method, request)
            async for response in unary_stream(request, context):
                yield response

        return grpc.unary_stream_rpc_method_handler(server_stream, **kw)

    async def checked(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for request in requests:
            if request.__class__ is Undecodable:
                await reject(context, method, request)
            yield request

    if handler.stream_unary is not None:
        stream_unary = handler.stream_unary
        if not inspect.iscoroutinefunction(stream_unary):
            return handler

        async def client_stream(requests: AsyncIterator[Any], context: Any) -> Any:
            return await stream_unary(checked(requests, context), context)

        return grpc.stream_unary_rpc_method_handler(client_stream, **kw)
    stream_stream = handler.stream_stream
    if not inspect.isasyncgenfunction(stream_stream):
        return handler

    async def bidi(requests: AsyncIterator[Any], context: Any) -> AsyncIterator[Any]:
        async for response in stream_stream(checked(requests, context), context):
            yield response

    return grpc.stream_stream_rpc_method_handler(bidi, **kw)
