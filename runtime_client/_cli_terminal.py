"""Human output that cannot drive the terminal it is printed on.

What the CLI prints comes from elsewhere: a model's answer (which a prompt injection can steer),
tool arguments and results, display names, provider error messages. Printed raw, an ESC or C1
control character is a terminal command — set the clipboard (OSC 52), rewrite what is already on
screen, retitle the window, make a link point elsewhere (OSC 8). So every character a terminal
would act on, other than newline and tab, is written as a visible escape (``\\x1b``, ``\\r``,
``\\x9b``). JSON output (``--json``) is not wrapped: json.dumps already escapes C0 characters and
a program reading it gets the text exactly.
"""

from __future__ import annotations

import io
from typing import BinaryIO, TextIO

__all__ = ["TerminalText", "visible_controls"]

_KEEP = {"\n", "\t"}
_ESCAPES = {
    c: f"\\x{c:02x}" if chr(c) != "\r" else "\\r"
    for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))
    if chr(c) not in _KEEP
}


def visible_controls(text: str) -> str:
    """``text`` with every terminal control character except newline and tab escaped."""
    return text.translate(_ESCAPES)


class TerminalText(io.TextIOBase):
    """A text stream that writes :func:`visible_controls` of everything to ``stream``."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(text.translate(_ESCAPES))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def fileno(self) -> int:
        return self._stream.fileno()

    def isatty(self) -> bool:
        return self._stream.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return self._stream.encoding

    @property
    def buffer(self) -> BinaryIO:
        """The raw byte stream, for output that is a file's bytes on purpose (``bundles get
        --content > file``): it is not text for people, so nothing is escaped."""
        return self._stream.buffer
