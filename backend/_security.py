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
  cross-site request), ``Path=/``. Its value is an HMAC of the token, so it survives a restart and
  changes when the token does; the token itself is never sent back. Every ``/api/`` path except
  login and ``/api/session`` then needs the cookie (401 ``UNAUTHENTICATED`` otherwise). The page,
  its static files and ``/healthz`` need none.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from http.cookies import SimpleCookie
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["COOKIE", "CSRF_HEADER", "SecurityMiddleware", "session_value"]

COOKIE = "worker_console_session"
CSRF_HEADER = "x-worker-console"
CSP = "default-src 'self'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
_SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
_OPEN_API = {"/api/login", "/api/session"}


def session_value(token: str) -> str:
    return hmac.new(
        token.encode(), b"worker-backend console session v1", hashlib.sha256
    ).hexdigest()


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


class SecurityMiddleware:
    def __init__(self, app: ASGIApp, *, token: str | None) -> None:
        self.app = app
        self._session = session_value(token) if token else None

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

        if method not in _SAFE_METHODS and _header(headers, CSRF_HEADER.encode()) != "1":
            await _deny(send_secured, 403, "CSRF_HEADER_MISSING", f"send the {CSRF_HEADER} header")
            return
        if (
            self._session is not None
            and is_api
            and path not in _OPEN_API
            and not hmac.compare_digest(_cookie(headers), self._session)
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
