"""The Starlette application: routes, static files, the security middleware, the lifespan that
starts and closes the :class:`~backend.service.Backend`."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from backend import _routes as r
from backend._events import worker_events
from backend.config import BackendConfig
from backend.errors import ApiError, error_response
from backend.metrics import BackendMetrics, MetricsMiddleware, metrics_endpoint
from backend.security import SecurityMiddleware
from backend.service import Backend

__all__ = ["create_app"]

STATIC = Path(__file__).parent / "static"
W = "/api/runtimes/{runtime_id}/workers/{worker_id}"


async def index(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


_ROUTING = {404: "ROUTE_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


async def http_error(request: Request, exc: Exception) -> Response:
    """What the router answers itself (no route, a method a route lacks): under ``/api/`` the
    typed JSON error every handler answers (it was Starlette's text/plain "Not Found", which the
    page can only show as a status text; an id holding an encoded ``/`` lands here); elsewhere
    (the page's files) Starlette's plain answer."""
    assert isinstance(exc, HTTPException)
    if not request.url.path.startswith("/api/"):
        if exc.status_code in (204, 304):
            return Response(status_code=exc.status_code, headers=exc.headers)
        return PlainTextResponse(exc.detail, status_code=exc.status_code, headers=exc.headers)
    reason = _ROUTING.get(exc.status_code, "HTTP_ERROR")
    if exc.status_code == 405:
        message = f"{request.method[:20]} is not allowed here"
    elif exc.status_code == 404:
        message = "no such API path (an id may not contain '/')"
    else:
        message = str(exc.detail)
    response = error_response(ApiError(exc.status_code, reason, message))
    if exc.headers and "allow" in {k.lower() for k in exc.headers}:
        response.headers["allow"] = next(v for k, v in exc.headers.items() if k.lower() == "allow")
    return response


def create_app(config: BackendConfig, *, backend: Backend | None = None) -> Starlette:
    """The ASGI app. Its lifespan starts the Backend (embedded runtime, registry, Companion)
    and closes it on shutdown."""
    service = backend or Backend(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if service.registry is None:  # `worker-backend serve` starts it before binding
            await service.start()
        try:
            yield
        finally:
            await service.close()

    routes = [
        Route("/", index),
        Route("/healthz", r.healthz),
        Route("/metrics", metrics_endpoint),
        Route("/api/session", r.session),
        Route("/api/login", r.login, methods=["POST"]),
        Route("/api/logout", r.logout, methods=["POST"]),
        Route("/api/runtimes", r.runtimes),
        Route("/api/workers", r.workers),
        Route("/api/workers", r.create_worker, methods=["POST"]),
        Route("/api/bundles", r.bundles),
        Route(W, r.worker_detail),
        Route(W + "/transcript", r.transcript),
        Route(W + "/input", r.send_input, methods=["POST"]),
        Route(W + "/usage", r.usage),
        Route(W + "/events", worker_events),
        Route("/api/runtimes/{runtime_id}/runs/{run_id}", r.get_run),
        Route("/api/runtimes/{runtime_id}/runs/{run_id}/cancel", r.cancel_run, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.backend = service
    app.add_middleware(
        SecurityMiddleware,
        sessions=service.sessions,
        # the name it listens on is its own (an address is allowed anyway)
        allowed_hosts=(*config.allowed_hosts, config.listen.rpartition(":")[0].strip("[]")),
    )
    # outermost: requests the security layer refuses (401, 403) are counted too
    app.state.metrics = BackendMetrics(service)
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics, routes=routes)
    return app
