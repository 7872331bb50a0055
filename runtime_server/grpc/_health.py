"""The health service, with a bound on its open ``Watch`` streams.

Health needs no token (probes and load balancers must reach it), so it is the one service an
anonymous caller can hold streams open on: each ``Watch`` costs the server about 20 KB for as long
as the caller keeps it, and nothing bounded them — a caller that can reach the port could
exhaust the server's memory with a few hundred thousand, with or without a token configured.
They are now bounded like event subscriptions, by ``limits.max_subscribers`` (counted apart from
them, over the main and the health port together); one more is RESOURCE_EXHAUSTED /
``TOO_MANY_SUBSCRIBERS``. ``Check`` (what Kubernetes' probes call) is never limited.
"""

from __future__ import annotations

from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2

from runtime_server.grpc._errors import status_details

__all__ = ["BoundedHealthServicer"]


class BoundedHealthServicer(health.aio.HealthServicer):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, max_watchers: int) -> None:
        super().__init__()
        self.max_watchers = max_watchers
        self.watchers = 0

    async def Watch(self, request: health_pb2.HealthCheckRequest, context: Any) -> None:
        if self.watchers >= self.max_watchers:
            message = f"the runtime has its maximum of {self.max_watchers} open health watches"
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            limit = {"limit": str(self.max_watchers)}
            details = status_details(code, message, "TOO_MANY_SUBSCRIBERS", limit)
            await context.abort(code, message, trailing_metadata=details)
        self.watchers += 1
        try:
            await super().Watch(request, context)
        finally:
            self.watchers -= 1
