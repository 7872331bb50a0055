"""Paging helpers: opaque page tokens and size-bounded pages."""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from runtime_server import errors

T = TypeVar("T")


def fitting(items: Sequence[T], weigh: Callable[[T], int], budget: int) -> int:
    """How many leading ``items`` fit in ``budget`` (bytes, as ``weigh`` bounds them; always at
    least one, so a single item larger than the budget is still delivered, alone)."""
    total = 0
    for i, item in enumerate(items):
        total += weigh(item)
        if total > budget and i > 0:
            return i
    return len(items)


def encode_token(kind: str, value: object) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{value}".encode()).decode().rstrip("=")


def decode_token(token: str, kind: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode()
        got, _, value = raw.partition(":")
        if got != kind or not value:
            raise ValueError
        if kind in ("d", "t"):
            number = int(value)
            if number < 0:
                raise ValueError
            return number
        return value
    except (ValueError, UnicodeDecodeError):
        raise errors.InvalidArgument("page_token", "is not a token this call issued") from None
