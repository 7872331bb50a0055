"""A hostile (or broken) remote runtime that answers more than any runtime legitimately sends.

A runtime never sends a message past its ``max_message_bytes`` (4 MiB by default; pages are cut
to fit it). The client used to take answers up to 64 MiB, so such a runtime could make the
Backend take 64 MiB answers on every poll. The client's limit is now explicit
(``max_receive_message_bytes``, default 4 MiB; a RuntimeClient argument, a RegistryOptions
field, and a per-runtime key of the registry's config), and an answer past it is a typed
MessageTooLarge (size, limit). The registry marks such a runtime UNREACHABLE with that reason
and keeps none of its answer.

The hostile runtime is a real grpc.aio server on loopback with a tiny servicer of its own,
answering GetRuntime with a 6 MiB version string (and health SERVING).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from registry_support import RegistryFactory, status_of, wait_state
from serving import eventually

from runtime_client import (
    MessageTooLarge,
    RegistryConfig,
    RegistryConfigError,
    RegistryOptions,
    RuntimeClient,
    RuntimeHealth,
    RuntimeRegistry,
)
from runtime_client.api import management_service_pb2 as management_pb
from runtime_client.api import management_service_pb2_grpc as management_grpc

HUGE = 6 * 1024 * 1024  # bytes of one answer: past the default limit (4 MiB)
OPTIONS = RegistryOptions(
    probe_timeout_s=5.0, refresh_interval_s=0.2, backoff_initial_s=0.05, backoff_max_s=0.5
)


class Hostile(management_grpc.ManagementServiceServicer):
    def __init__(self) -> None:
        self.calls = 0

    async def GetRuntime(self, request: Any, context: Any) -> Any:
        self.calls += 1
        reply = management_pb.GetRuntimeResponse()
        reply.runtime.runtime_id = "hostile"
        reply.runtime.version = "x" * HUGE
        return reply

    async def ListProfiles(self, request: Any, context: Any) -> Any:
        return management_pb.ListProfilesResponse()


@contextlib.asynccontextmanager
async def hostile_runtime() -> AsyncIterator[tuple[str, Hostile]]:
    server = grpc.aio.server(options=[("grpc.max_send_message_length", -1)])
    # the stubs declare every RPC abstract; grpc's generated base answers UNIMPLEMENTED for them
    servicer = Hostile()  # type: ignore[abstract]
    management_grpc.add_ManagementServiceServicer_to_server(servicer, server)
    health_servicer = health.aio.HealthServicer()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        await server.stop(None)


async def test_an_oversize_answer_is_a_typed_error() -> None:
    async with hostile_runtime() as (target, _):
        async with RuntimeClient(target, timeout=30) as client:
            with pytest.raises(MessageTooLarge) as caught:
                await client.get_runtime()
        err = caught.value
        assert err.limit == 4 * 1024 * 1024  # the default: a runtime's default max_message_bytes
        assert err.size > HUGE
        assert err.reason == "MESSAGE_TOO_LARGE"
        assert "max_receive_message_bytes" in err.message
        # the limit is the caller's choice: raised, the same answer is taken
        async with RuntimeClient(
            target, timeout=30, max_receive_message_bytes=2 * HUGE
        ) as trusting:
            assert len((await trusting.get_runtime()).version) == HUGE


async def test_the_registry_marks_a_runtime_that_answers_oversize(
    registry_factory: RegistryFactory,
) -> None:
    async with hostile_runtime() as (target, servicer):
        reg = await registry_factory(OPTIONS)
        reg.add_remote(target, alias="hostile")
        await reg.start()
        status = await wait_state(reg, "hostile", RuntimeHealth.UNREACHABLE)
        assert status.last_error.startswith("MESSAGE_TOO_LARGE"), status.last_error
        assert status.info is None  # nothing of the answer is kept
        assert status.runtime_id is None  # nor its identity
        assert servicer.calls >= 1
    # a per-runtime limit (the Backend's registry config) lets a trusted runtime answer more
    async with hostile_runtime() as (target, _):
        config = RegistryConfig.from_toml_dict(
            {"runtimes": [{"target": target, "max_receive_message_bytes": 2 * HUGE}]}
        )
        reg = RuntimeRegistry.from_config(config, options=OPTIONS)
        try:
            await reg.start()
            # GetRuntime is taken now, its runtime_id pinned (it then fails its ListProfiles:
            # this servicer has none)
            await eventually(
                lambda: status_of(reg, "remote-1").runtime_id == "hostile",
                within=30.0,
                what="the trusted runtime's answer taken",
            )
        finally:
            await reg.close()


@pytest.mark.parametrize("value", [0, 1024, "4MiB", True, 2**31])
def test_the_limit_is_checked_where_it_is_configured(value: object) -> None:
    with pytest.raises(RegistryConfigError, match=r"runtimes\[0\]\.max_receive_message_bytes"):
        RegistryConfig.from_toml_dict(
            {"runtimes": [{"target": "127.0.0.1:1", "max_receive_message_bytes": value}]}
        )
    with pytest.raises(ValueError, match="max_receive_message_bytes"):
        RegistryOptions(max_receive_message_bytes=value)  # type: ignore[arg-type]
