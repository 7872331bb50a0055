"""The observing interceptor (metrics and access log, grpc/_observe) wraps a method's handler once
and reuses the wrapper for every later call routed to the same handler — it was rebuilt per call
(a closure and a handler tuple on every RPC) — while a different handler for the same method
(the auth interceptor's deny handler) is wrapped afresh; through a real server with the access
log on, every call is still seen."""

from __future__ import annotations

import logging
from typing import Any

import grpc
import pytest
from serving import BASE_CONFIG

from runtime_server import Runtime
from runtime_server.grpc import OpsOptions, start_server
from runtime_server.runtime import parse_config


class Details:
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


async def _unary(request: Any, context: Any) -> Any:
    return request


async def test_a_methods_wrapper_is_built_once_per_handler(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = Runtime(config=parse_config(BASE_CONFIG))
    server = await start_server(runtime, "127.0.0.1:0", ops=OpsOptions(access_log="all"))
    try:
        (interceptor,) = server._ops.interceptors
        routes: dict[str, Any] = {"/svc.S/U": grpc.unary_unary_rpc_method_handler(_unary)}

        async def continuation(details: Any) -> Any:
            return routes.get(details.method)

        first = await interceptor.intercept_service(continuation, Details("/svc.S/U"))
        assert first is not routes["/svc.S/U"]  # wrapped
        assert await interceptor.intercept_service(continuation, Details("/svc.S/U")) is first
        assert await interceptor.intercept_service(continuation, Details("/svc.S/x")) is None
        routes["/svc.S/U"] = grpc.unary_unary_rpc_method_handler(_unary)  # e.g. a deny handler
        again = await interceptor.intercept_service(continuation, Details("/svc.S/U"))
        assert again is not first

        from runtime_client import RuntimeClient

        client = RuntimeClient(f"127.0.0.1:{server.port}")
        try:
            with caplog.at_level(logging.INFO, logger="runtime_server.access"):
                for _ in range(3):
                    await client.get_runtime()
        finally:
            await client.close()
        lines = [r for r in caplog.records if "GetRuntime OK" in r.getMessage()]
        assert len(lines) == 3  # the reused wrapper still sees every call
    finally:
        await server.stop(0)
