"""Keeping credentials out of everything the engine lets out.

The rule: every string that leaves the engine — error messages, notices, the text of stream
events, and log records of httpx/httpcore — is redacted against the credentials of the request,
*before* anything cuts it short (a key straddling a cut would otherwise leak its prefix).

What counts as a credential of a request (:func:`request_secrets`):

- the value of every credential-bearing header (``authorization``, ``proxy-authorization``,
  ``x-api-key``, ``api-key``, ``cookie``, and any header whose name contains ``key``, ``token``,
  ``secret``, ``auth``, ``password``, ``credential``, ``session`` or ``signature``), with and
  without its scheme word (``Bearer sk-...`` also yields ``sk-...``);
- every value of the profile's configured extra headers that is at least
  :data:`MIN_CONFIGURED_SECRET` characters long: such headers often carry credentials under names
  we cannot guess (``OpenAI-Organization``, a gateway's ``X-Portkey-...``); shorter values
  (``1``, ``beta``) would only mangle unrelated text;
- from the URL (:func:`url_secrets`): the password of ``user:password@host`` (httpx logs the URL
  whole at INFO, and sends it as ``Basic`` credentials, also covered) and the values of
  credential-named query parameters (``?key=...``).

What :class:`Redactor` replaces with :data:`MARK`:

- each secret as sent, stripped of surrounding whitespace, JSON-escaped, ``repr``-escaped and
  percent-encoded (:meth:`Redactor.quick`, cheap enough for every stream event);
- in error text, notices and log records (:meth:`Redactor.__call__`) also every run of at least
  :data:`PARTIAL_MIN` characters that is part of a secret, so an echo of a *truncated* key is
  caught too (a run that short of a random key is not found in other text by chance).

Log records: httpx and httpcore log request details (httpcore quotes exceptions at DEBUG, such as
``Illegal header value b'Bearer sk-...'``). :data:`SECRETS` is a process-wide registry of live
credentials (every request registers its own) and :class:`RedactingFilter` redacts each record's
message, arguments, exception text and stack against it. The engine attaches the filter to the
httpx/httpcore loggers the first time it registers a credential; an application attaches it to
its handlers with :func:`install_log_redaction` to cover every logger (``serve`` does). The
registry keeps only the :data:`MAX_LIVE_SECRETS` most recently used secrets, so a rotated or
deleted key ages out instead of being held forever.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Iterable, Mapping

MARK = "[redacted]"
MIN_SECRET = 4  # a credential header value shorter than this is not worth redacting
MIN_CONFIGURED_SECRET = 8
PARTIAL_MIN = 10  # fragments of a secret at least this long are redacted from error text
# Every fragment of PARTIAL_MIN characters holds one of its word's chunks of this length that
# start at a multiple of it (2 * PROBE - 1 <= PARTIAL_MIN): a text holding none of them holds no
# fragment, which `in` (C speed) tells before the scan of every window (Python speed).
PROBE = PARTIAL_MIN // 2
MAX_LIVE_SECRETS = 64

CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "x-api-key", "api-key", "cookie"}
)
_CREDENTIAL_WORDS = (
    "key", "token", "secret", "auth", "password", "credential", "session", "signature",
)  # fmt: skip
LIBRARY_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
)


def is_credential_header(name: str) -> bool:
    lowered = name.lower()
    return lowered in CREDENTIAL_HEADERS or any(w in lowered for w in _CREDENTIAL_WORDS)


def request_secrets(
    headers: Mapping[str, str], configured: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The credentials a request carries (see the module docstring), longest first."""
    found: set[str] = set()
    configured_names = {name.lower() for name in configured or ()}
    for name, value in headers.items():
        credential = is_credential_header(name)
        if not credential and name.lower() not in configured_names:
            continue
        minimum = MIN_SECRET if credential else MIN_CONFIGURED_SECRET
        for candidate in (value, value.strip(), value.strip().partition(" ")[2].strip()):
            if len(candidate) >= minimum:
                found.add(candidate)
    return tuple(sorted(found, key=len, reverse=True))


def url_secrets(url: str) -> tuple[str, ...]:
    """The credentials a URL carries: its userinfo password, credential-named query values."""
    try:
        parts = urllib.parse.urlsplit(url)
        password = parts.password
    except ValueError:
        return ()
    found = set()
    if password:
        username = urllib.parse.unquote(parts.username or "")
        plain = urllib.parse.unquote(password)
        basic = base64.b64encode(f"{username}:{plain}".encode()).decode()  # httpx sends Basic
        found |= {password, plain, basic}
    for name, value in urllib.parse.parse_qsl(parts.query):
        if is_credential_header(name):
            found.add(value)
    return tuple(s for s in found if len(s) >= MIN_SECRET)


def _encodings(secret: str) -> set[str]:
    stripped = secret.strip()
    forms = {secret, stripped}
    for form in (secret, stripped):
        forms.add(json.dumps(form)[1:-1])
        forms.add(repr(form)[1:-1])
        forms.add(urllib.parse.quote(form, safe=""))
    return {f for f in forms if len(f) >= MIN_SECRET}


class Redactor:
    """Replaces a fixed set of secrets (and their common encodings) in text. Falsy when empty."""

    __slots__ = ("_forms", "_grams", "_probes", "secrets")

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self.secrets = tuple(s for s in dict.fromkeys(secrets) if len(s) >= MIN_SECRET)
        forms: set[str] = set()
        grams: set[str] = set()
        probes: set[str] = set()
        for secret in self.secrets:
            forms |= _encodings(secret)
            for word in secret.split():  # fragments of the key, not of "Bearer "
                grams.update(word[i : i + PARTIAL_MIN] for i in range(len(word) - PARTIAL_MIN + 1))
                if len(word) >= PARTIAL_MIN:
                    starts = range(0, len(word) - PROBE + 1, PROBE)
                    probes.update(word[i : i + PROBE] for i in starts)
        # longest first: "Bearer sk-x" goes whole before "sk-x" would leave "Bearer [redacted]"
        self._forms = tuple(sorted(forms, key=len, reverse=True))
        self._grams = frozenset(grams)
        self._probes = tuple(probes)

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def quick(self, text: str) -> str:
        """Whole secrets and their encodings only: cheap, for every event of a stream."""
        for form in self._forms:
            if form in text:
                text = text.replace(form, MARK)
        return text

    def __call__(self, text: str) -> str:
        """Whole secrets, their encodings, and any fragment of at least PARTIAL_MIN characters."""
        text = self.quick(text)
        if not self._grams or len(text) < PARTIAL_MIN:
            return text
        for probe in self._probes:
            if probe in text:
                break
        else:
            return text  # no fragment can be in it (see PROBE)
        grams, n = self._grams, PARTIAL_MIN
        spans: list[list[int]] = []
        for i in range(len(text) - n + 1):
            if text[i : i + n] in grams:
                if spans and i <= spans[-1][1]:
                    spans[-1][1] = i + n
                else:
                    spans.append([i, i + n])
        if not spans:
            return text
        out: list[str] = []
        position = 0
        for start, end in spans:
            out += [text[position:start], MARK]
            position = end
        out.append(text[position:])
        return "".join(out)


class SecretRegistry:
    """The live secrets of this process, for redacting log records: bounded (least recently used
    out first), thread-safe (records are logged from any thread)."""

    def __init__(self, max_secrets: int = MAX_LIVE_SECRETS) -> None:
        self._max = max_secrets
        self._lock = threading.Lock()
        self._live: OrderedDict[str, None] = OrderedDict()
        self._redactor = Redactor()

    def remember(self, secrets: Iterable[str]) -> None:
        with self._lock:
            changed = False
            for secret in secrets:
                if len(secret) < MIN_SECRET:
                    continue
                if secret in self._live:
                    self._live.move_to_end(secret)
                else:
                    self._live[secret] = None
                    changed = True
            while len(self._live) > self._max:
                self._live.popitem(last=False)
            if changed:
                self._redactor = Redactor(self._live)

    def forget(self, secrets: Iterable[str]) -> None:
        with self._lock:
            for secret in secrets:
                self._live.pop(secret, None)
            self._redactor = Redactor(self._live)

    def clear(self) -> None:
        with self._lock:
            self._live.clear()
            self._redactor = Redactor()

    def __len__(self) -> int:
        return len(self._live)

    def redactor(self) -> Redactor:
        return self._redactor  # replaced whole, never mutated: safe to use without the lock


SECRETS = SecretRegistry()


class RedactingFilter(logging.Filter):
    """Redacts every record against a registry's live secrets; never drops a record."""

    def __init__(self, registry: SecretRegistry = SECRETS) -> None:
        super().__init__()
        self._registry = registry

    def filter(self, record: logging.LogRecord) -> bool:
        redact = self._registry.redactor()
        if not redact:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it to logging to report
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            text = logging.Formatter().formatException(record.exc_info)
            clean = redact(text)
            if clean != text:
                record.exc_text = clean  # Formatter uses exc_text instead of formatting again
        elif record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


LOG_FILTER = RedactingFilter()
_installed = False


def install_log_redaction(
    loggers: Iterable[str] = (), handlers: Iterable[logging.Handler] = ()
) -> None:
    """Attach the redacting filter to the httpx/httpcore loggers, to ``loggers`` (by name: a
    logger's filter sees only records logged on it, not on its children) and to ``handlers``
    (a handler's filter sees every record it would emit). Idempotent."""
    for name in (*LIBRARY_LOGGERS, *loggers):
        target = logging.getLogger(name)
        if LOG_FILTER not in target.filters:
            target.addFilter(LOG_FILTER)
    for handler in handlers:
        if LOG_FILTER not in handler.filters:
            handler.addFilter(LOG_FILTER)


def remember_request_secrets(redactor: Redactor) -> None:
    """Register a request's secrets for log redaction (and make sure the library loggers carry
    the filter: the first request with a credential installs it)."""
    global _installed
    if not redactor:
        return
    if not _installed:
        install_log_redaction()
        _installed = True
    SECRETS.remember(redactor.secrets)
