"""Retries around one provider stream.

Policy (:class:`RetryPolicy`):

- **Before the first event** (connect errors, HTTP 408/409/425/429/5xx/529, a stream that dies or
  idles before sending anything): retry with exponential backoff and full jitter — a delay drawn
  uniformly from ``[0, min(max_backoff_s, initial_backoff_s * 2**(n-1))]`` — but never sooner than
  the server's ``Retry-After`` (capped at ``max_retry_after_s``). At most ``max_attempts`` attempts
  in all, and no retry whose delay would end after ``max_elapsed_s`` since the first attempt.
- **Mid-stream** (events were already delivered, then a retryable failure: reset, idle timeout,
  an ``overloaded_error`` event): the request is sent again, at most ``max_stream_restarts`` times,
  and a :class:`PartialDiscarded` is yielded first. It tells observers to throw away every delta
  since the last completed message — the partial assistant message — because the new attempt
  streams the whole answer again from its start. The turn loop resets its accumulator on it.
- Not retried: errors that are not ``retryable`` (4xx other than the above, malformed JSON,
  configuration errors) and cancellation.

Each retry is announced with a :class:`Notice` (``code="provider_retry"``) before the wait.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass

from engine._errors import ProviderError, ProviderHTTPError
from engine._provider import Provider
from engine._types import ModelRequest, Notice, PartialDiscarded, StreamEvent


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 4  # attempts before the first event, the first one included
    initial_backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    max_elapsed_s: float = 120.0
    max_retry_after_s: float = 60.0  # a longer Retry-After than this is not waited for
    max_stream_restarts: int = 2  # mid-stream failures retried (each emits PartialDiscarded)

    @classmethod
    def none(cls) -> RetryPolicy:
        return cls(max_attempts=1, max_stream_restarts=0)


def backoff_delay(
    policy: RetryPolicy,
    failures: int,
    retry_after: float | None = None,
    *,
    rand: Callable[[], float] = random.random,
) -> float | None:
    """Delay before the next attempt after ``failures`` failures, or ``None`` when the server's
    Retry-After is longer than the policy is willing to wait."""
    growth: float = 2.0 ** max(0, failures - 1)
    ceiling = min(policy.max_backoff_s, policy.initial_backoff_s * growth)
    delay = rand() * ceiling  # full jitter: spreads out clients that failed together
    if retry_after is not None:
        if retry_after > policy.max_retry_after_s:
            return None
        delay = max(delay, retry_after)
    return delay


Sleep = Callable[[float], Awaitable[None]]


async def stream_with_retry(
    provider: Provider,
    request: ModelRequest,
    policy: RetryPolicy,
    *,
    sleep: Sleep = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    rand: Callable[[], float] = random.random,
) -> AsyncGenerator[StreamEvent | PartialDiscarded, None]:
    """``provider.stream(request)`` with the policy above applied."""
    started = clock()
    failures = 0  # failed attempts before any event
    restarts = 0  # mid-stream restarts
    while True:
        delivered = False
        error: ProviderError | None = None
        stream = provider.stream(request)
        try:
            async for event in stream:
                delivered = True
                yield event
            return
        except ProviderError as exc:
            error = exc
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()  # the HTTP stream closes now, also on cancellation
        if not error.retryable:
            raise error
        retry_after = error.retry_after if isinstance(error, ProviderHTTPError) else None
        if delivered:
            if restarts >= policy.max_stream_restarts:
                raise error
            restarts += 1
            delay = backoff_delay(policy, restarts, retry_after, rand=rand)
        else:
            failures += 1
            if failures >= policy.max_attempts:
                raise error
            delay = backoff_delay(policy, failures, retry_after, rand=rand)
        if delay is None or clock() - started + delay > policy.max_elapsed_s:
            raise error
        if delivered:
            yield PartialDiscarded(restarts, error.message)
        yield Notice("provider_retry", f"retrying in {delay:.2f}s after: {error.message}")
        await sleep(delay)
