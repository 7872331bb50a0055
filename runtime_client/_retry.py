"""Retries of unary calls that are safe to repeat, for a Runtime that restarts or drains.

Which calls are retried (the client decides per call, see ``RuntimeClient``):

- reads: GetRuntime, ListDiagnostics, ListProfiles, GetWorker, ListWorkers, GetRun,
  GetTranscript, ListEvents, GetUsage;
- idempotent writes: StopWorker, CancelRun, DeleteWorker (a retried delete that finds the worker
  gone reports success: the first attempt may have deleted it before the connection broke);
- CreateWorker and SendInput only when they carry a ``request_id`` (the Runtime answers a repeat
  with the first result, so a retry cannot create a second worker or run).

Every other call — CreateWorker/SendInput without a ``request_id`` — is sent once: after an
UNAVAILABLE it is unknown whether the Runtime acted on it.

What is retried: UNAVAILABLE (the server is down, restarting or the connection broke) and
RUNTIME_DRAINING (the Runtime is shutting down; its successor will take the call) — for the safe
calls above only. Waits grow exponentially with jitter (so clients cut at once by a restart do
not return in lockstep) and stop at ``max_attempts`` or once ``budget_s`` would be exceeded; the
call's own ``timeout`` still bounds the whole call, retries included. Then the last error is
raised.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

__all__ = ["DEFAULT_RETRY", "NO_RETRY", "RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a safe unary call is retried after UNAVAILABLE / RUNTIME_DRAINING.

    ``max_attempts`` counts the first try (1 = never retry); ``budget_s`` bounds the time from
    the first try to the start of the last one. The wait before retry ``n`` (1, 2, ...) is
    ``initial_backoff_s * multiplier**(n-1)`` capped at ``max_backoff_s``, less up to ``jitter``
    of it at random.
    """

    max_attempts: int = 10
    budget_s: float = 15.0
    initial_backoff_s: float = 0.05
    max_backoff_s: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        if self.budget_s < 0 or self.initial_backoff_s < 0 or self.max_backoff_s < 0:
            raise ValueError("RetryPolicy times must not be negative")
        if not 0.0 <= self.jitter <= 1.0:
            raise ValueError("RetryPolicy.jitter must be between 0 and 1")

    def delay(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1-based)."""
        base = min(self.max_backoff_s, self.initial_backoff_s * self.multiplier ** (retry - 1))
        return base * (1.0 - self.jitter * random.random())


DEFAULT_RETRY = RetryPolicy()
NO_RETRY = RetryPolicy(max_attempts=1)
