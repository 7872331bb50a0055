"""The edge's router (grpc/_edge) builds each method's handler once, at registration — the
observing wrapper (metrics, access log, log context, decode guard: grpc/_observe) and, with auth
on, the method's deny handler — and hands the same objects to grpc call after call (before, an
interceptor chain ran per call and a deny handler was wrapped afresh each time); through a real
server with the access log on and auth on, every call is still seen, an unauthenticated one
included."""

from __future__ import annotations

import asyncio
import logging

import pytest
from serving import BASE_CONFIG

from runtime_client import RuntimeClient, Unauthenticated
from runtime_server import Runtime
from runtime_server.grpc import OpsOptions, start_server
from runtime_server.runtime import parse_config

TOKEN = "reuse-test-token"
GET_RUNTIME = "/worker_runtime.v1.ManagementService/GetRuntime"
CHECK = "/grpc.health.v1.Health/Check"


class Details:
    def __init__(self, method: str, metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.method = method
        self.invocation_metadata = metadata


async def test_each_methods_handlers_are_built_once_and_reused(
    caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = Runtime(config=parse_config(BASE_CONFIG))
    server = await start_server(
        runtime, "127.0.0.1:0", auth_token=TOKEN, ops=OpsOptions(access_log="all")
    )
    try:
        router = server._edge  # the server's one generic handler
        authed = (("authorization", f"Bearer {TOKEN}"),)
        served = router.service(Details(GET_RUNTIME, authed))
        assert served is not None
        assert served.unary_unary.__name__ == "unary"
        assert router.service(Details(GET_RUNTIME, authed)) is served
        denied = router.service(Details(GET_RUNTIME))
        assert denied is not None
        assert denied is not served
        assert denied.request_deserializer is None
        assert router.service(Details(GET_RUNTIME, (("authorization", "Bearer no"),))) is denied
        health = router.service(Details(CHECK))  # needs no token
        assert health is not None
        assert router.service(Details(CHECK)) is health
        assert router.service(Details("/svc.S/x", authed)) is None  # UNIMPLEMENTED
        unknown = router.service(Details("/svc.S/x"))
        assert unknown is not None
        assert unknown.request_deserializer is None

        authed_client = RuntimeClient(f"127.0.0.1:{server.port}", token=TOKEN)
        anonymous = RuntimeClient(f"127.0.0.1:{server.port}")
        try:
            with caplog.at_level(logging.INFO, logger="runtime_server.access"):
                for _ in range(3):
                    await authed_client.get_runtime()
                with pytest.raises(Unauthenticated):
                    await anonymous.get_runtime()
                for _ in range(200):  # the server ends its side after the client read the status
                    if any("refused" in r.getMessage() for r in caplog.records):
                        break
                    await asyncio.sleep(0.01)
        finally:
            await authed_client.close()
            await anonymous.close()
        lines = [r.getMessage() for r in caplog.records if r.name == "runtime_server.access"]
        assert sum("GetRuntime OK" in line for line in lines) == 3  # every call seen
        assert any("refused UNAUTHENTICATED" in line for line in lines)  # the denied one too
    finally:
        await server.stop(0)
