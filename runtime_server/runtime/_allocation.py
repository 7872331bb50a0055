"""The allocation manager: which live worker holds which real path, read-only or read-write.

Rule: two live workers never both hold read-write on overlapping real paths, where overlap means
one path is a component-wise ancestor of, or equal to, the other after ``realpath`` (never a
string prefix: ``/a/b`` and ``/a/bc`` do not overlap). Read-only claims never conflict, with
anything. A worker's own places never conflict with each other.

Atomicity: :meth:`Allocations.claim` checks and records in one synchronous step (the Runtime runs
on one asyncio loop and never awaits in between), so of N concurrent creates on one path exactly
one wins. Claims are released when the worker stops (StopWorker, DeleteWorker). They need no
table of their own: a live worker's record holds its workspace, and :meth:`rebuild` re-claims
from the live workers in creation order at start, so the earliest worker keeps a path and a
later one that now conflicts (a symlink retargeted while the runtime was down) is reported.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from runtime_server import errors
from runtime_server.model import MountMode
from runtime_server.runtime._policy import Place, overlaps


@dataclass(frozen=True, slots=True)
class Claim:
    worker_id: str
    path: str  # real path
    parts: tuple[str, ...]
    mode: MountMode
    field: str = ""


class Allocations:
    def __init__(self) -> None:
        self._by_worker: dict[str, tuple[Claim, ...]] = {}  # insertion order = creation order

    def conflict(self, worker_id: str, places: Sequence[Place]) -> errors.WorkspaceConflict | None:
        """The first conflict ``places`` would have with another worker's claims, if any."""
        for place in places:
            if place.mode is not MountMode.READ_WRITE:
                continue
            for holder, claims in self._by_worker.items():
                if holder == worker_id:
                    continue
                for held in claims:
                    if held.mode is MountMode.READ_WRITE and overlaps(place.parts, held.parts):
                        return errors.WorkspaceConflict(place.field, place.path, holder, held.path)
        return None

    def claim(self, worker_id: str, places: Sequence[Place]) -> None:
        """Check and record, atomically; raises WorkspaceConflict and records nothing."""
        found = self.conflict(worker_id, places)
        if found is not None:
            raise found
        if places:
            self._by_worker[worker_id] = tuple(
                Claim(worker_id, p.path, p.parts, p.mode, p.field) for p in places
            )

    def release(self, worker_id: str) -> None:
        self._by_worker.pop(worker_id, None)

    def holds(self, worker_id: str) -> bool:
        return worker_id in self._by_worker

    def claims(self, worker_id: str = "") -> list[Claim]:
        if worker_id:
            return list(self._by_worker.get(worker_id, ()))
        return [c for claims in self._by_worker.values() for c in claims]

    def counts(self) -> tuple[int, int]:
        """(claims, read-write claims)."""
        all_ = self.claims()
        return len(all_), sum(c.mode is MountMode.READ_WRITE for c in all_)

    def rebuild(
        self, live: Iterable[tuple[str, Sequence[Place]]]
    ) -> list[tuple[str, errors.WorkspaceConflict]]:
        """Re-claim for ``live`` (worker id, places) in creation order; return the losers."""
        self._by_worker.clear()
        losers: list[tuple[str, errors.WorkspaceConflict]] = []
        for worker_id, places in live:
            try:
                self.claim(worker_id, places)
            except errors.WorkspaceConflict as exc:
                losers.append((worker_id, exc))
        return losers
