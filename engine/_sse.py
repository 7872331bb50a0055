"""A pure server-sent-events decoder: bytes in, events out, no I/O.

It follows the WHATWG "event stream interpretation" rules: the byte stream is UTF-8 (a leading BOM
is dropped, invalid bytes become U+FFFD), lines end in CRLF, LF or CR, a blank line dispatches the
event, ``:`` starts a comment, ``data`` lines join with ``\\n``, ``id`` and ``retry`` persist.

Chunk boundaries may fall anywhere (inside a multi-byte character, between the CR and LF of one
line ending), so the decoder keeps an incremental UTF-8 decoder and remembers a trailing CR.

One deliberate deviation: :meth:`SSEDecoder.flush` treats an unterminated last line as complete and
dispatches a pending event. The spec discards it, but real bodies (and recorded ones) often end
without the final blank line, and dropping e.g. Anthropic's ``message_stop`` would be worse. A body
cut by the network is detected at the HTTP layer (incomplete chunked read), not here.

Bounded and linear: one event (its data lines, or a line still waiting for its ending) may hold at
most ``max_event_chars`` characters — past that, :class:`SSEEventTooLarge` — and a long line that
arrives in many chunks is joined once, when its ending arrives, so a provider streaming a 100 MB
line without a newline costs memory up to the bound and time linear in its size (it used to be
quadratic: seconds of a blocked event loop for 10 MB).
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

_LINE_END = re.compile(r"\r\n|\r|\n")
_HAS_LINE_END = re.compile(r"[\r\n]")

# The largest event a provider sends is one tool call's arguments or a reasoning block: kilobytes
# to a few megabytes. 16 Mi characters leaves room and still bounds a runaway stream.
DEFAULT_MAX_EVENT_CHARS = 16 * 1024 * 1024


class SSEEventTooLarge(ValueError):
    """One event (or one line of it) is over the decoder's ``max_event_chars``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"a stream event is larger than {limit} characters")
        self.limit = limit


@dataclass(frozen=True, slots=True)
class SSEEvent:
    """One dispatched event. ``id`` is the last event id seen so far in the stream (it persists,
    as the spec says); ``retry`` the last valid ``retry`` value in milliseconds, if any."""

    event: str = "message"
    data: str = ""
    id: str = ""
    retry: int | None = None


class SSEDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, ``flush`` at end of stream."""

    def __init__(self, max_event_chars: int = DEFAULT_MAX_EVENT_CHARS) -> None:
        self.max_event_chars = max_event_chars
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._started = False  # whether the BOM check has run
        self._pending = ""  # text after the last complete line ending
        self._tail: list[str] = []  # chunks of a line still waiting for its ending (after _pending)
        self._tail_chars = 0
        self._data_chars = 0  # characters in the pending event's data lines
        self._skip_lf = False  # the previous chunk ended in CR: a leading LF belongs to it
        self._event = ""
        self._data: list[str] = []
        self._last_id = ""
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._utf8.decode(chunk)
        return self._feed_text(text)

    def flush(self) -> list[SSEEvent]:
        text = self._utf8.decode(b"", final=True)
        events = self._feed_text(text)
        if self._pending or self._tail:
            # the unterminated last line, then the blank line it never got (CR, not LF: a pending
            # "skip the LF of a CRLF" must not swallow it)
            events += self._feed_text("\r\r")
        elif self._data:
            events += self._feed_text("\r")
        return events

    def _feed_text(self, text: str) -> list[SSEEvent]:
        if not self._started:
            if not text:
                return []
            self._started = True
            if text[0] == "\ufeff":
                text = text[1:]
        if self._skip_lf and text:
            self._skip_lf = False
            if text[0] == "\n":
                text = text[1:]
        if not text:
            return []
        if _HAS_LINE_END.search(text) is None:
            # the middle of a long line: keep the chunk, join once when the line ends
            self._tail.append(text)
            self._tail_chars += len(text)
            if len(self._pending) + self._tail_chars + self._data_chars > self.max_event_chars:
                raise SSEEventTooLarge(self.max_event_chars)
            return []
        if self._tail:
            buffer = "".join((self._pending, *self._tail, text))
            self._tail = []
            self._tail_chars = 0
        else:
            buffer = self._pending + text
        lines = _LINE_END.split(buffer)
        # The last element has no line ending yet. A trailing CR was consumed as a line ending,
        # but an LF may still follow in the next chunk: remember to skip it.
        self._pending = lines.pop()
        if buffer.endswith("\r"):
            self._skip_lf = True
        events: list[SSEEvent] = []
        # The per-line work is inlined for the two common lines (blank, data): the decoder sits on
        # every byte the provider sends, and the split-at-every-offset test runs it ~10^5 times.
        data = self._data
        for line in lines:
            if not line:
                if data:
                    events.append(
                        SSEEvent(
                            self._event or "message", "\n".join(data), self._last_id, self._retry
                        )
                    )
                    data = self._data = []
                    self._data_chars = 0
                self._event = ""
            elif line.startswith("data:"):
                value = line[6:] if line[5:6] == " " else line[5:]
                data.append(value)
                self._data_chars += len(value) + 1
                if self._data_chars > self.max_event_chars:
                    raise SSEEventTooLarge(self.max_event_chars)
            else:
                self._field(line)
        if len(self._pending) + self._data_chars > self.max_event_chars:
            raise SSEEventTooLarge(self.max_event_chars)
        return events

    def _field(self, line: str) -> None:
        if line[0] == ":":
            return  # comment (keep-alive)
        name, colon, value = line.partition(":")
        if colon and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isascii() and value.isdigit():
            self._retry = int(value)
        # any other field is ignored, as the spec says
