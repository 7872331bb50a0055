"""JSON from outside the process, parsed without ``RecursionError``.

``json.loads`` recurses once per nesting level and raises ``RecursionError`` (not a ``ValueError``)
near Python's recursion limit: ``[[[[…]]]]`` a thousand levels deep is 2 KB, which a provider's
stream — or a model writing tool-call arguments — can produce. Every parse of text the process
did not write itself goes through :func:`loads`, which answers too-deep nesting as malformed
JSON (a ``json.JSONDecodeError``, so the callers' ``except ValueError`` handles it): a bad tool
call gets an error result, a bad stream chunk is a protocol error, and a worker whose history
holds such a call can still render it on its next turn.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]

TOO_DEEP = "nested too deeply"


def loads(text: str | bytes) -> Any:
    """``json.loads``, raising ``json.JSONDecodeError`` for nesting Python cannot recurse into."""
    try:
        return json.loads(text)
    except RecursionError:
        doc = text if isinstance(text, str) else text.decode("utf-8", "replace")
        raise json.JSONDecodeError(TOO_DEEP, doc, 0) from None
