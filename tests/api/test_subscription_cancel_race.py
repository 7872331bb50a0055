"""A subscription's reader that is cancelled in the same loop step as its wait ends (an event
arrives, the subscription is closed) must still be cancelled. ``asyncio.wait_for`` on Python 3.11
returns the finished wait's result instead and swallows the cancellation; a task iterating an
embedded subscription (the registry's worker-cache feed, closed at shutdown) then never ends."""

from __future__ import annotations

import asyncio

import pytest

from runtime_server import Runtime


@pytest.mark.parametrize("wait_s", [30.0, None])
async def test_cancel_racing_a_wakeup_still_cancels(wait_s: float | None) -> None:
    async with Runtime() as runtime:
        sub = runtime.subscribe(from_now=True)
        reader = asyncio.ensure_future(sub.next(wait_s))
        await asyncio.sleep(0.05)  # the reader waits
        assert not reader.done()
        sub.close()  # wakes the reader ...
        reader.cancel()  # ... and, in the same step, its task is cancelled
        with pytest.raises(asyncio.CancelledError):
            await reader
