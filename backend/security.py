"""The console's security layer, as one pure ASGI middleware (no BaseHTTPMiddleware: it would
buffer and break streaming responses and their disconnect detection).

- Every response carries ``Content-Security-Policy: default-src 'self'`` (no inline script, no
  foreign origin: the page's script is a file of this origin), ``X-Content-Type-Options:
  nosniff``, ``Referrer-Policy: no-referrer`` and, for the API, ``Cache-Control: no-store``.
- State-changing requests (anything but GET/HEAD/OPTIONS) need the header ``X-Worker-Console: 1``.
  A cross-site HTML form cannot set a header, and a cross-site ``fetch`` that sets one needs a
  CORS preflight this server never grants: so another site open in the same browser cannot
  drive the console (CSRF), even with no token configured.
- With a token configured, ``POST /api/login`` with ``{"token": ...}`` (compared in constant time)
  sets a session cookie: ``HttpOnly`` (no script reads it), ``SameSite=Strict`` (never sent by a
  cross-site request), ``Path=/``. Its value is a random id per login (:class:`Sessions`), kept in
  memory only as its SHA-256: no one can compute it from a guessed token (so guessing goes
  through the throttled login), ``POST /api/logout`` ends it, and a restart ends them all. Every
  ``/api/`` path except
  login and ``/api/session`` then needs the cookie (401 ``UNAUTHENTICATED`` otherwise). The page,
  its static files and ``/healthz`` need none.
- Without a token (an open console: loopback by default), every request's ``Host`` must be one
  the console answers to: an IP address, ``localhost`` (or a name under ``.localhost``), or a
  name in ``allowed_hosts`` (``"*"``: any). Anything else is 403 ``HOST_NOT_ALLOWED``. This stops
  DNS rebinding: a page of another site whose name is made to resolve to 127.0.0.1 is, to the
  browser, same-origin with the console, so it could set the CSRF header and read every answer;
  but its requests carry its own name as ``Host``. A rebinding page's name is never an IP
  address, so allowing those keeps access by address working. With a token the check is not
  needed: a rebinding origin has no session cookie (cookies belong to the name) and must log in
  like any other client.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import secrets
from collections import OrderedDict
from collections.abc import Iterable
from http.cookies import SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "MAX_SESSIONS",
    "SecurityMiddleware",
    "Sessions",
    "host_allowed",
    "same_secret",
]

COOKIE = "worker_console_session"
CSRF_HEADER = "x-worker-console"
CSP = "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_OPEN_API = {"/api/login", "/api/logout", "/api/session"}


def same_secret(given: str, secret: str) -> bool:
    """``given == secret`` in constant time, for any text a client sends: compared as bytes
    (``hmac.compare_digest`` raises TypeError for a ``str`` with non-ASCII characters, and
    ``encode()`` for a lone surrogate a JSON body can carry — each was a 500 with a traceback)."""
    # compared as digests, so the time taken says nothing about the secret's length either
    return hmac.compare_digest(
        hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest(),
        hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest(),
    )


# Sessions kept at once; a login past it ends the oldest (each costs ~100 bytes).
MAX_SESSIONS = 1024


class Sessions:
    """The console's sessions: a random 256-bit id per login, remembered as its SHA-256 (a lookup
    then says nothing, by its timing, about the ids). At most ``MAX_SESSIONS``, the oldest ended
    first; in memory only, so a restart of the Backend ends every session."""

    def __init__(self, limit: int = MAX_SESSIONS) -> None:
        self._limit = limit
        self._digests: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._digests)

    def new(self) -> str:
        session = secrets.token_urlsafe(32)
        self._digests[_digest(session)] = None
        while len(self._digests) > self._limit:
            self._digests.popitem(last=False)
        return session

    def valid(self, session: str) -> bool:
        return bool(session) and _digest(session) in self._digests

    def end(self, session: str) -> None:
        if session:
            self._digests.pop(_digest(session), None)


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest()


def _cookie(headers: list[tuple[bytes, bytes]]) -> str:
    for name, value in headers:
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed Cookie header is simply no session
                return ""
            morsel = jar.get(COOKIE)
            if morsel is not None:
                return morsel.value
    return ""


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> str:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def host_allowed(host_header: str, allowed: Iterable[str]) -> bool:
    """Whether an open console answers a request whose ``Host`` header is ``host_header``:
    an IP address, ``localhost`` or ``*.localhost``, or a name in ``allowed`` (``"*"``: any).
    No header at all (HTTP/1.0, a script) is allowed: every browser sends one."""
    names = set(allowed)
    if not host_header or "*" in names:
        return True
    host = host_header.strip().lower()
    if host.startswith("["):  # [v6]:port
        if "]" not in host:
            return False  # malformed
        host = host[1 : host.find("]")]
    else:
        name, colon, port = host.rpartition(":")
        if colon and port.isdigit():
            host = name
    host = host.rstrip(".")
    if host == "localhost" or host.endswith(".localhost") or host in names:
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class SecurityMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        sessions: Sessions | None,
        allowed_hosts: Iterable[str] = (),
    ) -> None:
        self.app = app
        self._sessions = sessions  # None: no token, an open console
        self._allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        method: str = scope["method"]
        headers: list[tuple[bytes, bytes]] = scope["headers"]
        is_api = path.startswith("/api/")

        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"no-referrer"),
                    (b"x-frame-options", b"DENY"),
                ]
                if is_api:
                    extra.append((b"cache-control", b"no-store"))
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        if self._sessions is None:
            host = _header(headers, b"host")
            if not host_allowed(host, self._allowed_hosts):
                await _deny(
                    send_secured,
                    403,
                    "HOST_NOT_ALLOWED",
                    f"this console does not answer to the host name {host[:200]!r}: add it to "
                    "allowed_hosts in the Backend's config (a page of another site reaching "
                    "the console through DNS rebinding is refused this way)",
                )
                return
        if method not in _SAFE_METHODS and _header(headers, CSRF_HEADER.encode()) != "1":
            await _deny(send_secured, 403, "CSRF_HEADER_MISSING", f"send the {CSRF_HEADER} header")
            return
        if (
            self._sessions is not None
            and is_api
            and path not in _OPEN_API
            and not self._sessions.valid(_cookie(headers))
        ):
            await _deny(send_secured, 401, "UNAUTHENTICATED", "log in first")
            return
        await self.app(scope, receive, send_secured)


async def _deny(send: Any, status: int, reason: str, message: str) -> None:
    body = json.dumps({"error": {"reason": reason, "message": message, "metadata": {}}}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
