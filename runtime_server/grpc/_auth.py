"""Optional bearer-token auth: every RPC but health needs ``authorization: Bearer <token>``.

The token is compared in constant time. Failures answer UNAUTHENTICATED with an ErrorInfo and
never echo what the caller sent. Auth comes before anything else: a denied call's body is never
decoded (its handler has no deserializer), and a method the server does not have answers
UNAUTHENTICATED too without a token (UNIMPLEMENTED only to a caller that has the token), so
neither the body nor the method list can be probed without it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from runtime_server.grpc._errors import status_details

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)


class BearerAuthInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("auth token must not be empty")
        self._expected = _digest(f"Bearer {token}".encode())

    def _authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else bytes(value)
                # digests of equal length: compare_digest answers a length mismatch at once,
                # which would tell a prober the token's length
                return hmac.compare_digest(_digest(got), self._expected)
        return False

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method.startswith(EXEMPT_PREFIXES) or self._authorized(
            handler_call_details.invocation_metadata
        ):
            return await continuation(handler_call_details)
        handler = await continuation(handler_call_details)
        message = "missing or invalid bearer token"
        trailer = status_details(grpc.StatusCode.UNAUTHENTICATED, message, "UNAUTHENTICATED", {})

        async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message, trailing_metadata=trailer)

        async def deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(grpc.StatusCode.UNAUTHENTICATED, message, trailing_metadata=trailer)
            yield  # pragma: no cover - makes this an async generator

        if handler is None:  # no such method: reads no request, whatever the call's shape
            return grpc.stream_stream_rpc_method_handler(deny_stream)
        # No request_deserializer: the body stays undecoded bytes (decoding comes after auth).
        kw = {"response_serializer": handler.response_serializer}
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(deny_stream, **kw)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(deny, **kw)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(deny_stream, **kw)
        return grpc.unary_unary_rpc_method_handler(deny, **kw)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()
