"""Calls refused for want of the bearer token get no access line each, whatever status they end
with: an anonymous caller must not be able to write the log (README "Logs"). A real ``serve``
with a token and the access log on, called without it, its stderr read back."""

from __future__ import annotations

import grpc
import pytest
from serving import SpawnServer

ACCESS = "runtime_server.access"
CALLS = 20


async def test_anonymous_calls_to_made_up_methods_write_at_most_one_bounded_line(
    spawn_server: SpawnServer,
) -> None:
    server = await spawn_server(
        "--auth-token-env", "RT_TOKEN", "--access-log", "all", env={"RT_TOKEN": "s3cret-token"}
    )
    async with grpc.aio.insecure_channel(server.target) as channel:
        for i in range(CALLS):
            # a method name of 15 KB: its call ended UNKNOWN (not UNAUTHENTICATED) and got a
            # WARNING line of its own, each time
            name = f"/made.up.Service{i}/" + "x" * 15_000
            with_long = channel.unary_unary(name)
            short = channel.unary_unary(f"/made.up.Service/M{i}")
            for call in (with_long, short):
                with pytest.raises(grpc.aio.AioRpcError):
                    await call(b"", timeout=30)
        known = channel.unary_unary("/worker_runtime.v1.ManagementService/GetRuntime")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await known(b"", timeout=30)
        assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert await server.terminate() == 0
    access = [line for line in server.stderr().splitlines() if ACCESS in line]
    # one summary line per minute at most, naming at most 200 characters of the method
    assert len(access) <= 1, [line[:300] for line in access]
    assert all(len(line) < 1000 for line in access), [len(line) for line in access]
