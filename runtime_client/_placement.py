"""Placement of a new worker: which runtime gets it when the caller names none.

Only a READY runtime that offers the profile (its cached ListProfiles) is a candidate — never a
DRAINING one (it refuses new work), never an unreachable one. Among the candidates the least
loaded wins: fewest active + queued runs (the cached GetRuntime), then fewest workers (the worker
cache, which shows a placed worker at once), then the alias, so equal runtimes are chosen in a
stable order. Nothing here waits on the network.
"""

from __future__ import annotations

from collections.abc import Iterable

from runtime_client._registry_types import RuntimeHealth
from runtime_client._runtime_entry import RuntimeEntry
from runtime_client.errors import NoRuntimeAvailable

__all__ = ["choose"]


def choose(entries: Iterable[RuntimeEntry], profile: str) -> RuntimeEntry:
    """The runtime to place a worker of ``profile`` on; NoRuntimeAvailable naming the profile."""
    best: RuntimeEntry | None = None
    best_key: tuple[int, int, str] | None = None
    for entry in entries:
        if entry.state is not RuntimeHealth.READY or not entry.runtime_id:
            continue
        if not entry.offers(profile):
            continue
        load = entry.load()
        key = (load.active_runs + load.queued_runs, load.workers, entry.alias)
        if best_key is None or key < best_key:
            best, best_key = entry, key
    if best is None:
        name = profile or "echo"
        raise NoRuntimeAvailable(f"no READY runtime offers profile {name!r}", profile=name)
    return best
