"""The HTTP API under ``/api/`` (JSON) and ``/healthz``. Every handler is wrapped by ``@api``,
the one place where errors become responses (``backend.errors``); handlers validate their input
first and name the field that is wrong.

The browser only ever names a runtime by its ``runtime_id`` (from ``GET /api/runtimes``); the
Backend routes through the registry, so no runtime address reaches a page.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from backend._bundle_routes import bundle_ref, bundles_view, place_bundle
from backend.errors import ApiError, error_response, from_client_error
from backend.security import COOKIE, same_secret
from backend.service import Backend
from backend.views import JSONResponse, runtime_view, to_json
from runtime_client import BusyPolicy, NoRuntimeAvailable, RuntimeHealth
from runtime_client.errors import ProfileNotFound, RuntimeServiceError

__all__ = ["api", "backend_of", "body_json", "path_id"]

Handler = Callable[[Request], Awaitable[Response]]
MAX_BODY_BYTES = 1 << 20
MAX_ID_CHARS = 200
FAILED_LOGIN_DELAY_S = 0.5
# Wrong logins waiting their turn at once; more are refused at once (429): a flood of guesses
# holds at most this many requests (and sockets), and still gets two answers a second.
MAX_WAITING_LOGINS = 16
# Workers in one answer of GET /api/workers (default, and the largest ``limit``): the whole merged
# list of 20,000 workers was 12.8 MB and a second of the event loop per call.
DEFAULT_LIST_WORKERS = 500
MAX_LIST_WORKERS = 1000
# How long a create or send may wait for an unreachable runtime to come back (the registry
# retries within it, never running the input twice): a person is waiting, so 503 soon after.
CALL_BUDGET_S = 4.0


def api(handler: Handler) -> Handler:
    @functools.wraps(handler)
    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ApiError as err:
            return error_response(err)
        except RuntimeServiceError as exc:
            return error_response(from_client_error(exc))

    return wrapped


def backend_of(request: Request) -> Backend:
    backend: Backend = request.app.state.backend
    return backend


def path_id(request: Request, name: str) -> str:
    value = str(request.path_params[name])
    if not value or len(value) > MAX_ID_CHARS or not value.isprintable():
        raise ApiError.invalid(name, "must be a non-empty id of at most 200 printable characters")
    return value


async def body_json(request: Request) -> Mapping[str, Any]:
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise ApiError.invalid("body", f"larger than {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    raw = b"".join(chunks)
    try:
        data = json.loads(raw) if raw.strip() else {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError.invalid("body", "is not valid JSON") from exc
    except RecursionError:  # json recurses per nesting level: [[[…]]] a thousand deep is 2 KB
        raise ApiError.invalid("body", "is not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ApiError.invalid("body", "must be a JSON object")
    return data


def _str(data: Mapping[str, Any], key: str, *, required: bool = False, limit: int = 0) -> str:
    value = data.get(key, "")
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ApiError.invalid(key, "must be a string")
    if required and not value:
        raise ApiError.invalid(key, "is required")
    if limit and len(value) > limit:
        raise ApiError.invalid(key, f"longer than {limit} characters")
    return value


# --- session ----------------------------------------------------------------------------------


@api
async def session(request: Request) -> Response:
    sessions = backend_of(request).sessions
    authed = sessions is None or sessions.valid(request.cookies.get(COOKIE, ""))
    return JSONResponse({"auth_required": sessions is not None, "authenticated": authed})


@api
async def login(request: Request) -> Response:
    """Sets the session cookie for the right token. Wrong guesses are answered one at a time,
    each after ``FAILED_LOGIN_DELAY_S``, over all clients: guessing the token online goes at
    two tries a second however many connections try at once, while the right token is never
    kept waiting behind them (it is checked first). At most ``MAX_WAITING_LOGINS`` wait at once;
    past that a wrong guess is answered 429 at once. The cookie is a new random session id
    (``security.Sessions``): it cannot be computed from a guessed token."""
    backend = backend_of(request)
    token = backend.config.token
    data = await body_json(request)
    given = _str(data, "token", required=True, limit=1000)
    if token is None or backend.sessions is None:
        return Response(status_code=204)
    if not same_secret(given, token):
        if backend.logins_waiting >= MAX_WAITING_LOGINS:
            raise ApiError(
                429, "TOO_MANY_LOGIN_ATTEMPTS", "too many wrong logins at once: try again later"
            )
        backend.logins_waiting += 1
        try:
            async with backend.failed_logins:
                await asyncio.sleep(FAILED_LOGIN_DELAY_S)
        finally:
            backend.logins_waiting -= 1
        raise ApiError(401, "UNAUTHENTICATED", "wrong token")
    resp = Response(status_code=204)
    # Secure when the browser came over HTTPS (a TLS proxy in front, telling uvicorn with
    # X-Forwarded-Proto from a trusted address): the cookie then never goes over plain HTTP
    secure = request.url.scheme == "https"
    resp.set_cookie(
        COOKIE, backend.sessions.new(), httponly=True, samesite="strict", path="/", secure=secure
    )
    return resp


@api
async def logout(request: Request) -> Response:
    """Ends this browser's session: the session id is forgotten (a copy of the cookie kept
    elsewhere no longer works) and the cookie cleared. A POST, so it needs the CSRF header like
    every change."""
    sessions = backend_of(request).sessions
    if sessions is not None:
        sessions.end(request.cookies.get(COOKIE, ""))
    resp = Response(status_code=204)
    resp.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return resp


# --- runtimes and workers ---------------------------------------------------------------------


async def healthz(request: Request) -> Response:
    """The Backend itself: 200 while it serves. A remote runtime being down is reported, never a
    failure of this check."""
    backend = backend_of(request)
    states: dict[str, int] = {}
    if backend.registry is not None:
        for status in backend.registry.runtimes():
            states[str(status.state)] = states.get(str(status.state), 0) + 1
    config = backend.config
    limits = {  # the Backend's own bounds (each runtime reports its own: GetRuntime)
        "max_streams": config.max_streams,
        "max_streams_per_client": config.max_streams_per_client,
        "max_connections": config.max_connections,
        "max_connections_per_client": config.max_connections_per_client,
        "request_timeout_s": config.request_timeout_s,
        "send_timeout_s": config.send_timeout_s,
        "max_input_chars": config.max_input_chars,
        "max_body_bytes": MAX_BODY_BYTES,
        "max_list_workers": MAX_LIST_WORKERS,
    }
    return JSONResponse(
        {
            "status": "ok",
            "runtimes": states,
            "open_streams": backend.streams.open,
            "stream_clients": backend.streams.clients(),
            "limits": limits,
        },
        headers={"cache-control": "no-store"},
    )


@api
async def runtimes(request: Request) -> Response:
    registry = backend_of(request).require_registry()
    return JSONResponse({"runtimes": [runtime_view(s) for s in registry.runtimes()]})


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name, "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 9 or not low <= int(raw) <= high:
        raise ApiError.invalid(name, f"must be an integer {low}..{high}")
    return int(raw)


@api
async def workers(request: Request) -> Response:
    """A page of the merged worker list: the Companion first, then the newest. ``limit`` (at
    most ``MAX_LIST_WORKERS``) and ``offset`` page it; ``total`` counts every worker and
    ``truncated`` says whether more follow. Only the page is turned into JSON."""
    limit = _query_int(request, "limit", DEFAULT_LIST_WORKERS, 1, MAX_LIST_WORKERS)
    offset = _query_int(request, "offset", 0, 0, 10**9)
    backend = backend_of(request)
    views = backend.require_registry().list_workers()
    companion = backend.companion_id
    views.sort(key=lambda v: v.worker.created_at, reverse=True)
    views.sort(key=lambda v: v.worker.worker_id != companion)  # stable: the newest stay first
    page = views[offset : offset + limit]
    return JSONResponse(
        {
            "workers": [
                {
                    "runtime_id": v.runtime_id,
                    "stale": v.stale,
                    "companion": v.worker.worker_id == companion,
                    "worker": to_json(v.worker),
                }
                for v in page
            ],
            "total": len(views),
            "truncated": offset + len(page) < len(views),
        }
    )


@api
async def bundles(request: Request) -> Response:
    """The Backend's config bundles and where each one is (``backend._bundle_routes``)."""
    return JSONResponse(await bundles_view(backend_of(request)))


@api
async def create_worker(request: Request) -> Response:
    registry = backend_of(request).require_registry()
    data = await body_json(request)
    profile = _str(data, "profile", required=True, limit=MAX_ID_CHARS)
    runtime_id = _str(data, "runtime_id", limit=MAX_ID_CHARS) or None
    kwargs = {
        "display_name": _str(data, "display_name", limit=MAX_ID_CHARS),
        "request_id": _str(data, "request_id", limit=MAX_ID_CHARS),
    }
    ref = bundle_ref(data.get("bundle"))
    try:
        if ref is None:
            rid, created = await registry.create_worker(
                profile=profile, runtime_id=runtime_id, timeout=CALL_BUDGET_S, **kwargs
            )
        else:  # a bundle's profile: the Backend's bundle sync places it and pushes on demand
            backend = backend_of(request)
            rid = runtime_id or await place_bundle(backend, ref)
            rid, created = await backend.bundles.create_worker(
                rid, ref, profile=profile, timeout=CALL_BUDGET_S, **kwargs
            )
    except ProfileNotFound as exc:
        where = f"in bundle {ref.id}" if ref is not None else "on that runtime"
        raise ApiError.invalid("profile", f"no profile {profile!r} {where}") from exc
    except NoRuntimeAvailable as exc:
        # 503 says "retry shortly", which is right while a runtime that may offer the profile is
        # away, and wrong when none can come back with it: a typo never heals, and neither does
        # a runtime whose address answers as another one (IDENTITY_CHANGED is final)
        statuses = registry.runtimes()
        replaced = [s.alias for s in statuses if s.state is RuntimeHealth.IDENTITY_CHANGED]
        away = any(
            s.state not in (RuntimeHealth.READY, RuntimeHealth.IDENTITY_CHANGED) for s in statuses
        )
        offered = any(
            p.name == profile
            for s in statuses
            if s.state is RuntimeHealth.READY
            for p in s.profiles
        )
        if ref is None and not away and not offered:
            why = f"no runtime offers profile {profile!r}"
            if replaced:
                names = ", ".join(repr(a) for a in replaced)
                why += f" (runtime {names} changed identity and is not used: see its last_error)"
            raise ApiError.invalid("profile", why) from exc
        raise
    return JSONResponse(
        {"runtime_id": rid, "worker": to_json(created.worker), "seq": created.seq},
        status_code=201,
    )


@api
async def worker_detail(request: Request) -> Response:
    rid, wid = path_id(request, "runtime_id"), path_id(request, "worker_id")
    handle = backend_of(request).require_registry().handle(rid)
    worker = await handle.get_worker(wid)
    run = await handle.get_run(worker.active_run_id) if worker.active_run_id else None
    return JSONResponse({"runtime_id": rid, "worker": to_json(worker), "run": to_json(run)})


@api
async def transcript(request: Request) -> Response:
    rid, wid = path_id(request, "runtime_id"), path_id(request, "worker_id")
    page_token = request.query_params.get("page_token", "")
    raw_size = request.query_params.get("page_size", "0") or "0"
    if not raw_size.isdigit() or len(raw_size) > 6:
        raise ApiError.invalid("page_size", "must be a non-negative integer")
    handle = backend_of(request).require_registry().handle(rid)
    page = await handle.get_transcript(wid, page_size=int(raw_size), page_token=page_token)
    return JSONResponse(
        {
            "entries": [to_json(e) for e in page.items],
            "next_page_token": page.next_page_token,
            "total_size": page.total_size,
            "resume_after_seq": getattr(page, "resume_after_seq", 0),
        }
    )


@api
async def send_input(request: Request) -> Response:
    backend = backend_of(request)
    rid, wid = path_id(request, "runtime_id"), path_id(request, "worker_id")
    data = await body_json(request)
    text = _str(data, "text")
    if not text.strip():
        raise ApiError.invalid("text", "must not be empty")
    if len(text) > backend.config.max_input_chars:
        raise ApiError.invalid("text", f"longer than {backend.config.max_input_chars} characters")
    policy = _str(data, "busy_policy") or "REJECT"
    if policy not in BusyPolicy.__members__:
        raise ApiError.invalid("busy_policy", "must be REJECT, ENQUEUE or INTERRUPT")
    accepted = await backend.require_registry().send_input(
        rid,
        wid,
        text,
        request_id=_str(data, "request_id", limit=MAX_ID_CHARS),
        busy_policy=BusyPolicy[policy],
        timeout=CALL_BUDGET_S,
    )
    return JSONResponse({"run": to_json(accepted.run), "seq": accepted.seq}, status_code=202)


@api
async def get_run(request: Request) -> Response:
    rid, run_id = path_id(request, "runtime_id"), path_id(request, "run_id")
    run = await backend_of(request).require_registry().handle(rid).get_run(run_id)
    return JSONResponse({"run": to_json(run)})


@api
async def cancel_run(request: Request) -> Response:
    """CancelRun: stops the model and any tool (not only the printing) and answers with the
    final run once its RunFinished is committed. Idempotent: a finished run comes back as it is
    (200, ``cancelled: false``)."""
    rid, run_id = path_id(request, "runtime_id"), path_id(request, "run_id")
    handle = backend_of(request).require_registry().handle(rid)
    before = await handle.get_run(run_id)
    run = before if before.terminal else await handle.cancel_run(run_id)
    return JSONResponse({"run": to_json(run), "cancelled": not before.terminal})


@api
async def usage(request: Request) -> Response:
    rid, wid = path_id(request, "runtime_id"), path_id(request, "worker_id")
    summary = await backend_of(request).require_registry().handle(rid).get_usage(wid)
    return JSONResponse({"usage": to_json(summary)})
