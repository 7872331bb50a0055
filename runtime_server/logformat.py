"""``serve``'s log output: ``--log-format text`` (the default, for people) or ``json`` (one object
per line, for log shippers).

A JSON line carries ``time`` (UTC, ISO 8601, milliseconds), ``level``, ``logger``, ``message`` and
``runtime_id`` always (empty only before the store is open), and where known: ``worker_id``,
``run_id``, ``request_id`` and ``rpc`` (from :mod:`runtime_server.logcontext`), and what the
access log adds (``grpc_code``, ``duration_ms``, ``reason``), and ``exc`` (a traceback).

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

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# attributes the access log passes with ``extra=``; copied when present
EXTRA_FIELDS = ("grpc_code", "duration_ms", "reason")


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


def configure(level: str, fmt: str = "text") -> list[logging.Handler]:
    """Root logging for ``serve``: one stderr handler in ``fmt``; returns the root's handlers (the
    caller puts the redacting filter on them)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {LOG_FORMATS}, not {fmt!r}")
    logging.basicConfig(level=level.upper(), format=TEXT_FORMAT)
    handlers = logging.getLogger().handlers
    if fmt == "json":
        for handler in handlers:
            handler.setFormatter(JsonFormatter())
    return list(handlers)
