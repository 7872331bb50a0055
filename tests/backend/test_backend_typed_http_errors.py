"""Every answer under ``/api/`` is the typed JSON error (``{"error": {reason, message,
metadata}}``), also for what no handler sees, and a bad event-stream request is refused at once.

Before: a path under ``/api/`` that no route has (``/api/runtimes/R/workers/a%2Fb``: the ``%2F``
is a ``/`` by the time routes are matched, so an id with a slash lands here) and a method a route
lacks (``DELETE /api/workers``) were Starlette's ``text/plain`` "Not Found" / "Method Not
Allowed", which the console's ``api()`` could only show as the status text; and
``GET .../workers/nope/events`` (an id the runtime refuses as malformed) was a ``200`` event
stream, holding a stream slot, whose only event was ``event: end`` with the 400 inside, while an
unknown well-formed id was the documented plain 404. Now it is that 400, before any slot is
taken. A real ``worker-backend serve`` over real HTTP.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx
from backend_serving import CSRF, start_backend

CONFIG = '[companion]\nprofile = "echo"\n'


def _typed(resp: httpx.Response, status: int, reason: str) -> dict[str, object]:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json"), resp.headers
    error: dict[str, object] = resp.json()["error"]
    assert set(error) == {"reason", "message", "metadata"}
    assert error["reason"] == reason, error
    return error


async def test_unrouted_api_paths_and_methods_are_typed_errors(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=30) as http:
            runtime_id = (await http.get("/api/runtimes")).json()["runtimes"][0]["runtime_id"]
            for path in (
                f"/api/runtimes/{runtime_id}/workers/a%2Fb",
                "/api/nothing-here",
                f"/api/runtimes/{runtime_id}/workers",
            ):
                _typed(await http.get(path), 404, "ROUTE_NOT_FOUND")
            resp = await http.delete("/api/workers", headers=CSRF)
            error = _typed(resp, 405, "METHOD_NOT_ALLOWED")
            assert "DELETE" in str(error["message"])
            assert "GET" in resp.headers["allow"]
            # the security headers are on these answers too
            assert resp.headers["x-content-type-options"] == "nosniff"
            assert resp.headers["cache-control"] == "no-store"
            # outside /api/ the page's files keep their plain answers
            missing = await http.get("/static/nothing.js")
            assert missing.status_code == 404
            assert not missing.headers["content-type"].startswith("application/json")
    finally:
        backend.terminate()
    assert "Traceback" not in backend.stderr()


async def test_a_malformed_worker_id_is_a_400_not_a_stream(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=30) as http:
            runtime_id = (await http.get("/api/runtimes")).json()["runtimes"][0]["runtime_id"]
            base = f"/api/runtimes/{runtime_id}/workers"
            error = _typed(await http.get(f"{base}/nope/events"), 400, "INVALID_ARGUMENT")
            assert error["metadata"] == {"field": "worker_id"}
            _typed(await http.get(f"{base}/{uuid.uuid4()}/events"), 404, "WORKER_NOT_FOUND")
            health = (await http.get("/healthz")).json()
            assert health["open_streams"] == 0
    finally:
        backend.terminate()
    assert "Traceback" not in backend.stderr()


async def test_a_malformed_bundle_ref_is_a_400_naming_bundle(tmp_path: Path) -> None:
    """A ``bundle`` that cannot be a ref (an id the runtimes refuse, a digest that is not
    ``sha256:`` + 64 hex digits) went to a runtime, which answered 409 CONFIG_BUNDLE_NOT_FOUND
    with the digest shown as ``<address>`` (``sha256:00`` looked like a HOST:PORT to the
    scrubber). Now it is a 400 naming ``bundle``, and no runtime is asked."""
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=30) as http:
            good = "a" * 64
            for ref in (
                f"../../etc@sha256:{good}",
                f"team/x@sha256:{good}",
                "team@sha256:00",
                f"team@sha256:{good.upper()}",
                f"team@sha512:{good}",
            ):
                body = {"profile": "helper", "bundle": ref}
                resp = await http.post("/api/workers", json=body, headers=CSRF)
                error = _typed(resp, 400, "INVALID_ARGUMENT")
                assert error["metadata"] == {"field": "bundle"}, ref
                assert "<address>" not in str(error["message"])
    finally:
        backend.terminate()
    assert "Traceback" not in backend.stderr()
