"""``serve``'s log output: ``--log-format text`` (the default, for people) or ``json`` (one object
per line, for log shippers).

A JSON line carries ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message`` and
``runtime_id`` always (empty only before the store is open), and where known: ``worker_id``,
``run_id``, ``request_id`` and ``rpc`` (from :mod:`runtime_server.logcontext`), and what the
access log adds (``grpc_code``, ``duration_ms``, ``reason``), and ``exc`` (a traceback).

A text line is one line: control characters in it (a newline, a carriage return, an escape
sequence) are written escaped (``\\n``, ``\\x1b``) by :class:`TextFormatter`, so text a caller
or a remote runtime chose (an error message naming a bundle's key, a runtime's error) cannot
forge a log line of its own or drive the terminal. A traceback keeps its lines, each indented,
so only a record's own line starts at the margin (an exception's message, the last line of a
traceback, may hold a remote party's newline too). A JSON line is
escaped by JSON itself. ``worker-backend serve`` logs through the same formatter.

The message is ``record.getMessage()`` *after* the handler's filters ran: the redacting filter
(``engine.install_log_redaction``) sits on the handler, so the message and traceback are already
cleaned of live credentials when they are formatted — whatever the format.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from runtime_server import logcontext

__all__ = [
    "LOG_FORMATS",
    "TEXT_FORMAT",
    "HoldUntilIdentified",
    "JsonFormatter",
    "TextFormatter",
    "configure",
    "one_line",
]

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# attributes the access log passes with ``extra=``; copied when present
EXTRA_FIELDS = ("grpc_code", "duration_ms", "reason")


def one_line(text: str) -> str:
    """``text`` with every non-printable character escaped (printable text: unchanged)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` with the line itself (not a traceback after it) kept to one line."""

    def __init__(self, fmt: str = TEXT_FORMAT) -> None:
        super().__init__(fmt)

    def formatMessage(self, record: logging.LogRecord) -> str:
        return one_line(super().formatMessage(record))

    def formatException(self, ei: Any) -> str:
        return _indented(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _indented(super().formatStack(stack_info))


def _indented(text: str) -> str:
    """Every line of ``text`` indented (a control character other than a newline escaped)."""
    return "\n".join("    " + one_line(line) for line in text.splitlines())


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        ms = int(record.msecs)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        out: dict[str, Any] = {
            "time": f"{stamp}.{ms:03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "runtime_id": logcontext.runtime_id(),
        }
        for key, var in (
            ("worker_id", logcontext.worker_id),
            ("run_id", logcontext.run_id),
            ("request_id", logcontext.request_id),
            ("rpc", logcontext.rpc),
        ):
            value = var.get()
            if value:
                out[key] = value
        for key in EXTRA_FIELDS:
            extra = record.__dict__.get(key)
            if extra is not None and extra != "":
                out[key] = extra
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class HoldUntilIdentified(logging.Handler):
    """Holds records logged before the Runtime's id is known (the store is not open yet: the id
    lives in it), then hands them on, so every JSON line carries ``runtime_id``. Held records go
    out on the first record after the id is known, on :meth:`flush` (``serve`` flushes once it
    serves) and at exit (``logging.shutdown`` flushes) — with an empty id only if the Runtime
    never started. At most :attr:`MAX_HELD` are held; older ones go out as they are."""

    MAX_HELD = 1000

    def __init__(self, target: logging.Handler) -> None:
        super().__init__(target.level)
        self.target = target
        self._held: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if not logcontext.runtime_id():
            self._held.append(record)
            if len(self._held) > self.MAX_HELD:
                self.target.handle(self._held.pop(0))
            return
        if self._held:
            self._release()
        self.target.handle(record)

    def _release(self) -> None:
        held, self._held = self._held, []
        for record in held:
            self.target.handle(record)

    def flush(self) -> None:
        self.acquire()
        try:
            self._release()
        finally:
            self.release()
        self.target.flush()

    def close(self) -> None:
        self.flush()
        self.target.close()
        super().close()


def configure(level: str, fmt: str = "text") -> list[logging.Handler]:
    """Root logging for ``serve``: one stderr handler in ``fmt``; returns the root's handlers (the
    caller puts the redacting filter on them: filters run before a record is held)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {fmt!r}")
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
    root = logging.getLogger()
    for handler in root.handlers:
        handler.setFormatter(TextFormatter())
    if fmt == "json":
        for handler in list(root.handlers):
            handler.setFormatter(JsonFormatter())
            root.removeHandler(handler)
            root.addHandler(HoldUntilIdentified(handler))
    return list(root.handlers)
