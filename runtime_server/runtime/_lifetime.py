"""Lifetime usage: what a Runtime has spent since its store was created.

Runtime-wide usage (``GetRuntime.usage``, ``GetUsage`` without a worker) is the sum over the
workers the Runtime holds now, so it falls when a worker is deleted (its usage leaves with its
data). Lifetime usage never falls: it is that sum plus the usage of every deleted worker. The
deleted part is kept in the store's meta under :data:`DELETED_KEY`, written in the same batch as
the delete itself, so after a crash or a restart the two halves still add up (the live half is
rebuilt from the workers' own usage). Run counts work the same way. With the memory store the
deleted part lives as long as the process, like everything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

import engine
from runtime_server.store import PutMeta

DELETED_KEY = "runs.deleted_usage"

_USAGE_FIELDS = tuple(f.name for f in fields(engine.Usage))


@dataclass(frozen=True, slots=True)
class UsageTotals:
    """Usage and the number of runs it covers."""

    usage: engine.Usage = field(default_factory=engine.Usage)
    runs: int = 0

    def plus(self, usage: engine.Usage, runs: int) -> UsageTotals:
        return UsageTotals(self.usage + usage, self.runs + runs)


@dataclass(frozen=True, slots=True)
class UsageSummary:
    """``get_usage``'s answer. For the whole Runtime: ``usage``/``runs`` of the workers it holds
    now (active runs included) and the ``lifetime_*`` totals, which never decrease. For one
    worker the lifetime figures equal the current ones (a worker's usage only grows)."""

    usage: engine.Usage
    runs: int
    lifetime_usage: engine.Usage
    lifetime_runs: int


def load_deleted(meta: Mapping[str, str]) -> UsageTotals:
    """The deleted workers' totals as stored (zero for a store that has none)."""
    raw = meta.get(DELETED_KEY)
    if not raw:
        return UsageTotals()
    obj = json.loads(raw)
    usage = obj.get("usage", {})
    return UsageTotals(
        engine.Usage(**{name: int(usage.get(name, 0)) for name in _USAGE_FIELDS}),
        int(obj.get("runs", 0)),
    )


def deleted_mutation(totals: UsageTotals) -> PutMeta:
    """The store mutation that records the deleted workers' totals."""
    usage = {name: getattr(totals.usage, name) for name in _USAGE_FIELDS}
    return PutMeta(DELETED_KEY, json.dumps({"usage": usage, "runs": totals.runs}))
