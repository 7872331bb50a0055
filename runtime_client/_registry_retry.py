"""Bounded retries of the registry's ``create_worker`` / ``send_input``.

Both always carry a ``request_id``, so repeating them cannot do anything twice (the runtime
answers a repeat with the first result, and its idempotency keys survive restarts). A retry
follows UNAVAILABLE / RUNTIME_DRAINING / DEADLINE_EXCEEDED from the runtime, or a runtime the
registry does not route to right now (CONNECTING, UNREACHABLE); between tries it waits for the
runtime's state to change (READY again) or a jittered backoff, whichever comes first — never a
fixed delay — and the whole call stays within ``budget`` seconds. Not retried: an identity change
(final) and AUTH_FAILED (waiting will not make the token right). No failover: a request stays on
the runtime it was sent to.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import TypeVar

from runtime_client._handle import RuntimeHandle
from runtime_client._monitor import jittered
from runtime_client._registry_types import RegistryOptions, RuntimeHealth
from runtime_client._runtime_entry import RuntimeEntry
from runtime_client.errors import (
    DeadlineExceeded,
    RuntimeIdentityChanged,
    RuntimeUnavailable,
    Unavailable,
)

__all__ = ["call_with_retries"]

T = TypeVar("T")
# (RuntimeDraining is an Unavailable)
_RETRYABLE = (Unavailable, DeadlineExceeded, TimeoutError)


async def call_with_retries(
    entry: RuntimeEntry,
    call: Callable[[RuntimeHandle], Awaitable[T]],
    budget: float,
    options: RegistryOptions,
) -> T:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + budget
    attempt = 0
    while True:
        attempt += 1
        remaining = deadline - loop.time()
        try:
            handle = entry.check()
            if attempt == 1 and budget >= options.call_timeout_s:
                return await call(handle)  # the handle's own call deadline bounds it
            async with asyncio.timeout(max(remaining, 0.001)):
                return await call(handle)
        except RuntimeIdentityChanged:
            raise
        except RuntimeUnavailable:
            if entry.state is RuntimeHealth.AUTH_FAILED:
                raise
            if deadline - loop.time() <= 0:
                raise
        except _RETRYABLE as exc:
            entry.poke()  # the connection failed under a call: the health loop looks now
            if deadline - loop.time() <= 0:
                if isinstance(exc, TimeoutError):
                    raise DeadlineExceeded(
                        f"runtime {entry.alias!r} did not answer within {budget:g} s",
                        metadata={"runtime_id": entry.runtime_id or ""},
                    ) from exc
                raise
        # wait for the runtime's state to change (READY again), or a jittered backoff
        wait = min(deadline - loop.time(), jittered(options.backoff_initial_s, attempt, 2.0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(max(wait, 0.0)):
                await entry.wait_changed()
