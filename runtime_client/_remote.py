"""How the registry reaches a remote runtime: two clients on one channel, and the health Watch.

The routed client carries the registry's call deadline and a short retry policy of its own (the
registry's ``create_worker`` / ``send_input`` retry on top of it, knowing the runtime's state);
the probe client shares the channel with a short deadline and no retries (the health loop has
its own backoff). The channel has keepalive, so a connection that silently died is noticed even
between probes. Recreating the connection closes the channel and builds both clients anew.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any, cast

import grpc
import grpc.aio
from grpc_health.v1 import health_pb2, health_pb2_grpc

from runtime_client._client import RuntimeClient
from runtime_client._registry_config import ClientTLS
from runtime_client._registry_types import RegistryOptions
from runtime_client._retry import NO_RETRY, RetryPolicy
from runtime_client.errors import from_rpc_error

__all__ = ["RemoteConnection"]

# Routed calls: a restart blip is absorbed here; a longer outage is the registry's business.
_ROUTED_RETRY = RetryPolicy(max_attempts=3, budget_s=1.0)


class RemoteConnection:
    def __init__(
        self,
        target: str,
        *,
        token: str | None,
        tls: ClientTLS | None,
        options: RegistryOptions,
        max_receive_message_bytes: int | None = None,
    ) -> None:
        self.target = target
        self.max_receive = max_receive_message_bytes or options.max_receive_message_bytes
        self._token = token
        self._tls = tls
        self._options = options
        self.client: RuntimeClient | None = None
        self.probe: RuntimeClient | None = None

    def open(self) -> tuple[RuntimeClient, RuntimeClient]:
        """Build the routed and probe clients on a new channel (inside the event loop)."""
        opts = self._options
        tls = self._tls
        client = RuntimeClient(
            self.target,
            token=self._token,
            tls=tls is not None,
            ca_file=tls.ca_file if tls else None,
            cert_file=tls.cert_file if tls else None,
            key_file=tls.key_file if tls else None,
            channel_options={
                "grpc.keepalive_time_ms": int(opts.keepalive_time_s * 1000),
                "grpc.keepalive_timeout_ms": int(opts.keepalive_timeout_s * 1000),
            },
            timeout=opts.call_timeout_s,
            retry=_ROUTED_RETRY,
            max_receive_message_bytes=self.max_receive,
        )
        probe = RuntimeClient.from_channel(
            client.channel, token=self._token, timeout=opts.probe_timeout_s, retry=NO_RETRY
        )
        self.client, self.probe = client, probe
        return client, probe

    async def check(self) -> bool:
        """One health check with the probe's deadline (True = SERVING): liveness, answered by the
        runtime's event loop without reading its store. Health needs no token."""
        assert self.client is not None
        stub = health_pb2_grpc.HealthStub(self.client.channel)
        try:
            reply = await cast(Any, stub).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=self._options.probe_timeout_s
            )
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def watch(self) -> AsyncIterator[bool]:
        """The overall health status, as it changes (True = SERVING). Health needs no token."""
        assert self.client is not None
        stub = health_pb2_grpc.HealthStub(self.client.channel)
        call = cast(Any, stub).Watch(health_pb2.HealthCheckRequest(service=""))
        try:
            async for response in call:
                status = response.status
                if status == health_pb2.HealthCheckResponse.SERVICE_UNKNOWN:
                    continue
                yield status == health_pb2.HealthCheckResponse.SERVING
        except grpc.aio.AioRpcError as exc:
            raise from_rpc_error(exc) from exc
        finally:
            with contextlib.suppress(Exception):
                call.cancel()
