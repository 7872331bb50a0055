"""The gRPC edge: the only server code that imports grpc."""

from __future__ import annotations

from runtime_server.grpc._ops import OpsListenError, OpsOptions
from runtime_server.grpc._server import SERVICE_NAMES, RuntimeServer, TLSFiles, start_server

__all__ = [
    "SERVICE_NAMES",
    "OpsListenError",
    "OpsOptions",
    "RuntimeServer",
    "TLSFiles",
    "start_server",
]
