"""The event loop ``serve`` runs on: uvloop by default, asyncio's own loop with ``--event-loop
asyncio``.

Everything the server does runs on one event loop thread, and much of that thread's work per
gRPC message is the loop's own: grpc.aio's poller thread writes a byte to a socket pair for every
completion, the loop wakes on it (``add_reader``), runs the completion's callback and then the
task it resumes. asyncio's loop runs each of those iterations in Python (``_run_once``,
``selectors``); uvloop runs them in C (libuv). Decided by measurement (README "Performance
figures", interleaved against asyncio's loop): callgrind instruction counts of a served runtime
14-17% lower per run on every path measured (per-event and batched, concurrency 1 and 16); the
server's CPU per run (all threads, schedstat) 0.78-0.95x in the median at concurrency 1 and on
the batched stream, and no clear difference on the per-event stream at concurrency 16.

grpc.aio needs nothing from the loop but ``add_reader`` on that socket and
``call_soon_threadsafe``, which uvloop provides; its completion queue binds to the loop running
when the first grpc.aio object is created, which is the loop built here (``asyncio.Runner``
creates it before ``serve`` creates anything). The embedded Runtime, the Backend and the tests
run on whatever loop their host runs: only ``serve`` chooses.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

EVENT_LOOPS = ("uvloop", "asyncio")  # the first is the default
DEFAULT_EVENT_LOOP = EVENT_LOOPS[0]


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """For ``asyncio.Runner(loop_factory=...)``; None is asyncio's own loop."""
    if name == "asyncio":
        return None
    if name == "uvloop":
        import uvloop  # only when chosen: an embedding host never imports it

        return uvloop.new_event_loop
    raise ValueError(f"event loop must be one of {', '.join(EVENT_LOOPS)}, not {name!r}")


def running_loop_name() -> str:
    """What the running loop is (``uvloop`` or ``asyncio``), read from the loop itself rather than
    from the option that asked for it: the start-up banner reports this."""
    module = type(asyncio.get_running_loop()).__module__
    return module.split(".", 1)[0]
