"""The Runtime's resources, acquired in order and released in reverse — the aiohttp way.

``start()`` puts each resource (the provider factory's HTTP client and local models, the
providers, the store, the event log's readers, the final flush) on a :class:`Resources` stack *as
soon as it is acquired*; a start that fails midway releases exactly what it had acquired, and the
Runtime is left with nothing open or running. ``close()`` drains the runs and then releases the
stack: every release runs even when an earlier one failed, and the failures are collected and
raised together (:class:`RuntimeCloseError`), not only logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

log = logging.getLogger(__name__)

Release = Callable[[], Awaitable[None]]


class RuntimeCloseError(ExceptionGroup[Exception]):
    """Releasing the Runtime's resources failed: ``exceptions`` holds every failure, in the
    order the releases ran (each release ran regardless)."""

    def derive(self, excs: Sequence[Exception]) -> RuntimeCloseError:  # type: ignore[override]
        return RuntimeCloseError(self.message, list(excs))


class Resources:
    """An ``AsyncExitStack`` whose releases all run, with their failures collected.

    ``quiet(exc)`` names failures already reported elsewhere (a store failure the store watch
    reported): those are not collected again."""

    def __init__(self, quiet: Callable[[BaseException], bool] = lambda _exc: False) -> None:
        self._stack = contextlib.AsyncExitStack()
        self._quiet = quiet
        self._failures: list[Exception] = []

    def push(self, what: str, release: Release) -> None:
        """Release with ``release()`` at close (the last pushed is released first)."""

        async def run() -> None:
            try:
                await release()
            except Exception as exc:  # the other releases still run
                parts = list(exc.exceptions) if isinstance(exc, ExceptionGroup) else [exc]
                for part in parts:
                    if not self._quiet(part):
                        log.error("error during shutdown (%s): %s", what, part)
                        self._failures.append(part)

        self._stack.push_async_callback(run)

    async def release(self) -> list[Exception]:
        """Release everything, last acquired first; returns the failures (and forgets them)."""
        await self._stack.aclose()
        failures, self._failures = self._failures, []
        return failures
