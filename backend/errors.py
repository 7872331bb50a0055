"""Errors as HTTP: one table from the client's error tree to an HTTP status, one JSON shape.

Every error body is ``{"error": {"reason", "message", "metadata"}}``. The mapping goes by the
error's gRPC status code (``runtime_client.errors.StatusCode``), which every client error class
carries, so a reason added later still lands on the right status:

=====================  ======  ==============================================================
status code            HTTP    examples
=====================  ======  ==============================================================
INVALID_ARGUMENT       400     empty or oversize text, a bad id (metadata names the field)
OUT_OF_RANGE           400     CURSOR_EXPIRED (metadata oldest_seq), CURSOR_AHEAD
NOT_FOUND              404     unknown runtime, worker, run or profile
ALREADY_EXISTS         409     a request_id reused for a different request
FAILED_PRECONDITION    409     WORKER_BUSY (metadata active_run_id), WORKER_STOPPED
PERMISSION_DENIED      403     a workspace or capability the host refuses
RESOURCE_EXHAUSTED     429     QUEUE_FULL, TOO_MANY_WORKERS, TOO_MANY_SUBSCRIBERS
(the console itself)   429     TOO_MANY_STREAMS, TOO_MANY_CLIENT_STREAMS, TOO_MANY_LOGIN_ATTEMPTS
UNAVAILABLE            503     the runtime is unreachable or draining (``Retry-After``)
DEADLINE_EXCEEDED      504
UNIMPLEMENTED          501     the runtime is older than this Backend (lacks the method)
anything else          502     the runtime failed (never the caller's fault)
=====================  ======  ==============================================================

What a runtime said may name its address (a transport error text such as "failed to connect to
127.0.0.1:50051") or a host path (STORE_FAILURE's metadata ``path`` is the SQLite file); the
browser must never see a runtime address, token, provider URL or host path, so for UNAVAILABLE /
DEADLINE_EXCEEDED / internal failures the message is a fixed sentence and internal failures carry
no metadata, path-valued metadata (``path``, ``held_path``) is left out, and any message or value
kept is scrubbed of URLs, HOST:PORT pairs and absolute paths (``scrub``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

from runtime_client.errors import RuntimeServiceError, StatusCode

__all__ = ["ApiError", "error_response", "from_client_error", "scrub"]

RETRY_AFTER_S = 2

_HTTP = {
    StatusCode.INVALID_ARGUMENT: 400,
    StatusCode.OUT_OF_RANGE: 400,
    StatusCode.NOT_FOUND: 404,
    StatusCode.ALREADY_EXISTS: 409,
    StatusCode.FAILED_PRECONDITION: 409,
    StatusCode.ABORTED: 409,
    StatusCode.PERMISSION_DENIED: 403,
    StatusCode.RESOURCE_EXHAUSTED: 429,
    StatusCode.UNAVAILABLE: 503,
    StatusCode.DEADLINE_EXCEEDED: 504,
    StatusCode.UNIMPLEMENTED: 501,  # a runtime older than this Backend
}
# Messages of these statuses come from the transport or the runtime's internals: replaced.
_FIXED = {
    501: "the runtime does not support this request: it is older than this Backend",
    503: "the runtime is unavailable; retry shortly",
    504: "the runtime did not answer in time",
    502: "the runtime failed to handle the request",
}
_URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s'\"]+", re.IGNORECASE)
# [v6]:port, dotted.name:port / 1.2.3.4:port, name:port; not a time of day such as 12:30
_HOSTPORT = re.compile(
    r"(?:\[[0-9a-f:]+\]|[a-z0-9-]+(?:\.[a-z0-9-]+)+|[a-z][a-z0-9-]*):\d{1,5}\b", re.IGNORECASE
)


# an absolute path of two or more components (/srv/data/runtime.sqlite3), not "a/b" or "1/2"
_PATH = re.compile(r"(?<![\w./<>-])(?:/[\w.@%+~-]+){2,}/?")
# metadata whose value is a host path (STORE_FAILURE, WORKSPACE_CONFLICT): never shown
_HOST_KEYS = frozenset({"path", "held_path"})


def scrub(text: str) -> str:
    """``text`` without URLs, HOST:PORT pairs (runtime targets, provider base URLs) and absolute
    paths (the runtime's files)."""
    return _PATH.sub("<path>", _HOSTPORT.sub("<address>", _URL.sub("<url>", text)))


class ApiError(Exception):
    """An error the Backend itself raises (bad input, too many streams); rendered like the
    runtime's own."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        metadata: Mapping[str, str] | None = None,
        *,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.metadata = dict(metadata or {})
        self.retry_after = retry_after

    @classmethod
    def invalid(cls, field: str, why: str) -> ApiError:
        return cls(400, "INVALID_ARGUMENT", f"{field}: {why}", {"field": field})


def from_client_error(exc: RuntimeServiceError) -> ApiError:
    status = _HTTP.get(exc.code, 502)
    message = _FIXED.get(status) or scrub(exc.message)
    metadata = {k: scrub(v) for k, v in exc.metadata.items() if k not in _HOST_KEYS}
    if status == 502:
        metadata = {}  # the runtime's internals (a store state, a file): nothing for a browser
    reason = exc.reason
    if status == 502 and exc.code is StatusCode.UNAUTHENTICATED:
        reason = "RUNTIME_AUTH_FAILED"  # the Backend's credentials, not the browser's
    return ApiError(
        status, reason, message, metadata, retry_after=RETRY_AFTER_S if status == 503 else None
    )


def error_response(err: ApiError) -> Response:
    body: dict[str, Any] = {
        "error": {"reason": err.reason, "message": err.message, "metadata": err.metadata}
    }
    headers = {"Retry-After": str(err.retry_after)} if err.retry_after is not None else None
    return Response(
        json.dumps(body), status_code=err.status, media_type="application/json", headers=headers
    )
