"""runtime_server: the embeddable Runtime core, its stores, and (in ``runtime_server.grpc``,
imported only on demand) the grpc.aio server around it.

Importing this package never imports grpc: embedding must not drag the network in.
"""

from __future__ import annotations

from runtime_server import errors, model
from runtime_server.runtime import (
    Accepted,
    Config,
    Created,
    Profile,
    Runtime,
    RuntimeInfo,
    RuntimeState,
    load_config,
)
from runtime_server.store import MemoryStore, Store

__all__ = [
    "Accepted",
    "Config",
    "Created",
    "MemoryStore",
    "Profile",
    "Runtime",
    "RuntimeInfo",
    "RuntimeState",
    "Store",
    "errors",
    "load_config",
    "model",
]
