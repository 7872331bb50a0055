"""The Companion: one worker on the embedded runtime that the Backend keeps for the person at the
console, pinned first in the worker list.

Idempotent across restarts: it is found again by its label (``worker-backend.role=companion``)
on the embedded runtime, whose SQLite store keeps workers and transcripts, so a restart finds the
same worker with its history rather than creating a second one. A STOPPED companion (someone
stopped it) is left alone and a new one is created: the console must always have one to talk to.
"""

from __future__ import annotations

from runtime_client import RuntimeHandle, Worker, WorkerState

__all__ = ["COMPANION_LABEL", "ensure_companion"]

COMPANION_LABEL = ("worker-backend.role", "companion")


async def ensure_companion(handle: RuntimeHandle, *, profile: str, display_name: str) -> Worker:
    key, value = COMPANION_LABEL
    page = await handle.list_workers(labels={key: value})
    live = [w for w in page.items if w.state is not WorkerState.STOPPED]
    if live:
        return min(live, key=lambda w: w.created_at)
    created = await handle.create_worker(
        profile=profile, display_name=display_name, labels={key: value}
    )
    return created.worker
