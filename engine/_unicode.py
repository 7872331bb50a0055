"""Provider text made valid Unicode before it leaves the engine.

JSON may carry UTF-16 surrogates as ``\\uD83D`` escapes, and ``json.loads`` turns an unpaired one
into a lone surrogate in a Python ``str``. Providers produce them: an emoji's pair split over two
stream chunks (``"\\ud83d"`` then ``"\\ude00"``, as some OpenAI-compatible servers send a token that
ends mid-character), or a truncated string. A ``str`` holding a lone surrogate cannot be encoded
as UTF-8, so protobuf refuses it — the event that carried it failed every read of the log after
it (ListEvents, subscriptions, the transcript): one such chunk cut every subscriber off for good.

So the turn loop passes every stream event through :class:`DeltaRepair`: a delta that ends in a
high surrogate keeps it back and joins it to the next delta of the same kind, which completes the
pair (the emoji arrives whole, one delta later); a surrogate with no partner becomes U+FFFD, the
replacement character. :func:`valid_text` does the same for a whole string (the committed
message's fields and notices). ASCII text — nearly every delta — costs one ``isascii`` call.
"""

from __future__ import annotations

import re
from dataclasses import replace

from engine._types import ReasoningDelta, StreamEvent, TextDelta

__all__ = ["DeltaRepair", "valid_text"]

_SURROGATE = re.compile("[\ud800-\udfff]")
_HIGH = ("\ud800", "\udbff")  # a pair's first half
REPLACEMENT = "\ufffd"


def valid_text(text: str) -> str:
    """``text`` with every surrogate pair joined into its character and every lone surrogate
    replaced by U+FFFD; ``text`` itself when it has no surrogate."""
    if text.isascii() or _SURROGATE.search(text) is None:
        return text
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


class DeltaRepair:
    """Repairs one streamed message's text and reasoning deltas (see the module docstring).

    ``repair(event)`` returns the event to use — itself, a repaired copy, or ``None`` when a delta
    was only a held-back high surrogate; ``flush()`` the deltas still owed at the end of the
    stream (a held surrogate that never got its partner, as U+FFFD)."""

    __slots__ = ("_held",)

    def __init__(self) -> None:
        # per delta kind: the delta whose trailing high surrogate is held back (its fields are
        # reused for the delta that completes or flushes it)
        self._held: dict[type, TextDelta | ReasoningDelta] = {}

    def repair(self, event: StreamEvent) -> StreamEvent | None:
        if not isinstance(event, (TextDelta, ReasoningDelta)):
            return event
        kind = type(event)
        delta = event
        text = delta.text
        held = self._held.pop(kind, None) if self._held else None
        if held is None and (text.isascii() or _SURROGATE.search(text) is None):
            return event  # the common case: nothing to repair
        if held is not None:
            text = held.text + text
        if text and _HIGH[0] <= text[-1] <= _HIGH[1]:
            self._held[kind] = replace(delta, text=text[-1])
            text = text[:-1]
            if not text:
                return None
        return _with_text(delta, valid_text(text))

    def flush(self) -> list[TextDelta | ReasoningDelta]:
        """The held-back surrogates, each as a U+FFFD delta of its kind (then forgotten)."""
        owed = [_with_text(d, REPLACEMENT) for d in self._held.values()]
        self._held.clear()
        return owed


def _with_text(delta: TextDelta | ReasoningDelta, text: str) -> TextDelta | ReasoningDelta:
    return delta if text == delta.text else replace(delta, text=text)
