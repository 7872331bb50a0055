"""Who a log line is about: context variables the log formatter reads (stdlib only).

The gRPC edge sets ``worker_id``/``run_id``/``request_id``/``rpc`` for the duration of a call (from
the request's fields); a run's task sets ``worker_id`` and ``run_id`` when it starts. asyncio copies
the context into every task it creates, so lines logged from anything a call or a run starts carry
them too, with no argument threading through the core. ``runtime_id`` is process-wide: one serve
process hosts one Runtime.
"""

from __future__ import annotations

from contextvars import ContextVar

worker_id: ContextVar[str] = ContextVar("worker_id", default="")
run_id: ContextVar[str] = ContextVar("run_id", default="")
request_id: ContextVar[str] = ContextVar("request_id", default="")
rpc: ContextVar[str] = ContextVar("rpc", default="")

_runtime_id = ""


def set_runtime_id(value: str) -> None:
    global _runtime_id
    _runtime_id = value


def runtime_id() -> str:
    return _runtime_id
