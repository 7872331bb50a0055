"""``worker-backend serve``'s log output: every line through one formatter, uvicorn's included.

``--log-format text`` (the default) or ``json``, as ``worker-runtime serve``'s
(:mod:`runtime_server.logformat`): a text line is one line, its control characters escaped; a
JSON line is one object. Before, uvicorn configured its own loggers (``uvicorn``,
``uvicorn.error``, ``uvicorn.access``) with its own handlers and formatter, which left them
outside all of that: a request line with a newline or an escape sequence in its path wrote raw
control characters to the log, the JSON format did not apply to them, and a token in a request's
query string was written as it came. Now uvicorn is started with ``log_config=None`` (it
configures no handler of its own) and its loggers propagate to the root's handlers here.

Secrets: the root's handlers carry two filters. The engine's (``engine.install_log_redaction``:
live provider credentials of the embedded runtime) and :class:`BackendRedactor`: the Backend's
own secrets (the console's login token, the remote runtimes' bearer tokens) wherever they
appear, as sent and percent-encoded, and the value of every credential-named query parameter
(``?token=...``, ``&api_key=...``), whatever its value — so a token a client put in a URL is
never logged, known or not.

The access log (``uvicorn.access``: one line per request, with its path and query) is on at
``--log-level info`` and below, off above (the default is ``warning``).
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Iterable

import engine
from runtime_server.logformat import configure, one_line

__all__ = ["UVICORN_LOGGERS", "BackendRedactor", "access_log", "configure_logging"]

UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
MARK = "[redacted]"
_MIN_SECRET = 4
# a query parameter whose name says it carries a credential (the engine's words for headers)
_CREDENTIAL_PARAM = re.compile(
    r"(?i)([?&;][^=&;\s\"']*(?:key|token|secret|auth|password|credential|session|signature)"
    r"[^=&;\s\"']*=)[^&;\s\"'#]*"
)


class BackendRedactor(logging.Filter):
    """Redacts the Backend's secrets and credential-named query parameters from every record
    (its message with the arguments filled in); never drops a record."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._forms: list[str] = []
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these too (the config's tokens, known once it is read)."""
        forms = set(self._forms)
        for secret in secrets:
            secret = secret.strip()
            if len(secret) >= _MIN_SECRET:
                forms.update({secret, urllib.parse.quote(secret, safe=""), repr(secret)[1:-1]})
        self._forms = sorted(forms, key=len, reverse=True)  # longest first

    def redact(self, text: str) -> str:
        for form in self._forms:
            if form in text:
                text = text.replace(form, MARK)
        return _CREDENTIAL_PARAM.sub(lambda m: m[1] + MARK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it to the formatter to report
            return True
        record.msg, record.args = self.redact(message), None
        if record.exc_info and not record.exc_text:
            # formatted here to be redacted; each line indented and escaped as TextFormatter
            # does (a formatter takes exc_text as it is)
            text = self.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_text = "\n".join("    " + one_line(ln) for ln in text.splitlines())
        elif record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure_logging(level: str, fmt: str) -> BackendRedactor:
    """Root logging for the Backend in ``fmt`` with both redacting filters, and uvicorn's
    loggers handing their records to it (start uvicorn with ``log_config=None``). Returns the
    Backend's redactor: ``add`` the config's secrets to it once they are read."""
    handlers = configure(level, fmt)
    engine.install_log_redaction(handlers=handlers)
    redactor = BackendRedactor()
    for handler in handlers:
        handler.addFilter(redactor)
    for name in UVICORN_LOGGERS:
        logger = logging.getLogger(name)
        logger.handlers.clear()  # none of its own: the root's, through propagation
        logger.propagate = True
    return redactor


def access_log(level: str) -> bool:
    """Whether uvicorn's access log is on: at ``info`` and below."""
    return logging.getLevelNamesMapping().get(level.upper(), logging.WARNING) <= logging.INFO
