"""Helpers for the tests that compare the client's models with the in-process handle's: a walk
asserting two model trees are equal type for type, and taking the first events of a stream."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import AsyncGenerator, Sequence
from typing import Any

import runtime_client as rc


def walk(a: Any, b: Any, where: str) -> None:
    """``a`` and ``b`` are equal trees of the same types, field by field."""
    assert type(a) is type(b), where
    if dataclasses.is_dataclass(a):
        for f in dataclasses.fields(a):
            if f.compare:
                walk(getattr(a, f.name), getattr(b, f.name), f"{where}.{f.name}")
    elif isinstance(a, tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            walk(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


async def take(events: AsyncGenerator[rc.Event, None], n: int) -> list[rc.Event]:
    """The first ``n`` events of ``events`` (fewer if it ends), closing it."""
    out: list[rc.Event] = []
    async with contextlib.aclosing(events):
        async for event in events:
            out.append(event)
            if len(out) == n:
                return out
    return out


def assert_same_events(got: Sequence[rc.Event], local: Sequence[rc.Event]) -> None:
    """``got`` (read through a client) are ``local`` (the in-process handle's) event for event:
    the same trees, equal, with the same repr and their payloads' hash."""
    assert len(got) == len(local)
    for a, b in zip(got, local, strict=True):
        walk(a, b, a.kind)
        assert a == b
        assert repr(a) == repr(b)
        if a.kind != "worker_created":  # (a Worker holds its labels' dict: not hashable)
            assert hash(a.payload) == hash(b.payload)
