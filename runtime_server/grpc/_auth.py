"""Optional bearer-token auth: every RPC but health needs ``authorization: Bearer <token>``.

The token is compared in constant time. Failures answer UNAUTHENTICATED with an ErrorInfo and
never echo what the caller sent. Auth comes before anything else: the edge's router
(:mod:`._edge`) checks the token when grpc asks it for a call's handler, and answers a caller
without it with a *deny handler* — no request deserializer, so a denied call's body is never
decoded. A method the server does not have answers UNAUTHENTICATED too without a token
(UNIMPLEMENTED only to a caller that has the token), so neither the body nor the method list can
be probed without it. Deny handlers are built once per method, when the method is registered.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import grpc

from runtime_server.grpc._errors import status_details

EXEMPT_PREFIXES = ("/grpc.health.v1.Health/",)
_MESSAGE = "missing or invalid bearer token"


class BearerAuth:
    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("auth token must not be empty")
        self._expected = _digest(f"Bearer {token}".encode())
        trailer = status_details(grpc.StatusCode.UNAUTHENTICATED, _MESSAGE, "UNAUTHENTICATED", {})

        async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, _MESSAGE, trailing_metadata=trailer
            )

        async def deny_stream(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, _MESSAGE, trailing_metadata=trailer
            )
            yield  # pragma: no cover - makes this an async generator

        self._deny = deny
        self._deny_stream = deny_stream

    @staticmethod
    def exempt(method: str) -> bool:
        return method.startswith(EXEMPT_PREFIXES)

    def authorized(self, metadata: Any) -> bool:
        for key, value in metadata or ():
            if key == "authorization":
                got = value.encode() if isinstance(value, str) else bytes(value)
                # digests of equal length: compare_digest answers a length mismatch at once,
                # which would tell a prober the token's length
                return hmac.compare_digest(_digest(got), self._expected)
        return False

    def deny_handler(self, handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
        """What answers a call without the token: of ``handler``'s shape (so the client reads
        the status it expects), or, for a method the server does not have (``None``), a bidi
        stream that reads no request whatever the call's shape."""
        if handler is None:
            return grpc.stream_stream_rpc_method_handler(self._deny_stream)
        # No request_deserializer: the body stays undecoded bytes (decoding comes after auth).
        kw = {"response_serializer": handler.response_serializer}
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(self._deny_stream, **kw)
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(self._deny, **kw)
        if handler.stream_stream:
            return grpc.stream_stream_rpc_method_handler(self._deny_stream, **kw)
        return grpc.unary_unary_rpc_method_handler(self._deny, **kw)


def _digest(value: bytes) -> bytes:
    return hashlib.sha256(value).digest()
