"""The gRPC edge: the only server code that imports grpc.

Public: the server (:func:`start_server`, :class:`RuntimeServer`), the services it registers
(:data:`SERVICE_NAMES`), the ErrorInfo domain of its errors (:data:`ERROR_DOMAIN`), the largest
event batch a stream sends (:data:`MAX_BATCH_EVENTS`), :mod:`convert`, the one module converting
domain values to and from protobuf messages (for checks that compare the domain with the wire,
such as the wire-size accounting), and :mod:`servicers`, the four servicers and the one unary and
one stream wrapper every RPC goes through (for checks of the edge's structure); the two stream
economies, for checks of their behaviour: :class:`EventCache` (each event encoded once),
:mod:`wire` (events as the bytes the streams send) and :mod:`coalesce` (fewer, fuller batch
messages)."""

from __future__ import annotations

from runtime_client.errors import ERROR_DOMAIN  # defined once, where clients read it
from runtime_server.grpc import _coalesce as coalesce
from runtime_server.grpc import _convert as convert
from runtime_server.grpc import _servicers as servicers
from runtime_server.grpc import _wire as wire
from runtime_server.grpc._eventcache import EventCache
from runtime_server.grpc._ops import OpsListenError, OpsOptions
from runtime_server.grpc._server import SERVICE_NAMES, RuntimeServer, TLSFiles, start_server
from runtime_server.grpc._servicers import MAX_BATCH_EVENTS

__all__ = [
    "ERROR_DOMAIN",
    "MAX_BATCH_EVENTS",
    "SERVICE_NAMES",
    "EventCache",
    "coalesce",
    "convert",
    "servicers",
    "wire",
    "OpsListenError",
    "OpsOptions",
    "RuntimeServer",
    "TLSFiles",
    "start_server",
]
