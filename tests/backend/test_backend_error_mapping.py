"""Client errors become HTTP errors by their status code, with one JSON shape; what a runtime
said about its transport or internals never reaches a browser (it may name an address)."""

from __future__ import annotations

import json

import pytest

from backend.errors import error_response, from_client_error, scrub
from runtime_client import errors as e


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (e.InvalidArgument("text: must not be empty", metadata={"field": "text"}), 400),
        (e.CursorExpired("cursor expired", metadata={"oldest_seq": "12"}), 400),
        (e.WorkerNotFound("worker w1 not found"), 404),
        (e.RunNotFound("run r1 not found"), 404),
        (e.WorkerBusy("busy", metadata={"active_run_id": "r9"}), 409),
        (e.IdempotencyConflict("reused"), 409),
        (e.QueueFull("queue full"), 429),
        (e.Unavailable("failed to connect to all addresses; last error: 127.0.0.1:50051"), 503),
        (e.RuntimeDraining("draining"), 503),
        (e.DeadlineExceeded("deadline"), 504),
        (e.Unimplemented("Method not found!"), 501),
        (e.InternalError("boom at http://10.0.0.5:8000/v1"), 502),
        (e.Unauthenticated("bad token"), 502),
    ],
)
def test_status_and_shape(exc: e.RuntimeServiceError, status: int) -> None:
    resp = error_response(from_client_error(exc))
    assert resp.status_code == status
    body = json.loads(bytes(resp.body))
    assert set(body) == {"error"}
    assert set(body["error"]) == {"reason", "message", "metadata"}
    assert body["error"]["reason"]
    assert "127.0.0.1" not in bytes(resp.body).decode()
    assert "10.0.0.5" not in bytes(resp.body).decode()
    if status == 503:
        assert resp.headers["retry-after"].isdigit()
    else:
        assert "retry-after" not in resp.headers


def test_busy_carries_the_active_run_and_invalid_names_the_field() -> None:
    busy = from_client_error(e.WorkerBusy("busy", metadata={"active_run_id": "r9"}))
    assert (busy.reason, busy.metadata) == ("WORKER_BUSY", {"active_run_id": "r9"})
    bad = from_client_error(e.InvalidArgument("text: too long", metadata={"field": "text"}))
    assert bad.metadata["field"] == "text"


def test_scrub_removes_urls_and_host_ports_but_keeps_words() -> None:
    text = "provider http://127.0.0.1:8123/v1/chat failed; runtime lab.internal:50051 down at 12:30"
    out = scrub(text)
    assert out == "provider <url> failed; runtime <address> down at 12:30"


def test_no_host_path_reaches_the_browser() -> None:
    """STORE_FAILURE names the SQLite file in its metadata and message; WORKSPACE_CONFLICT names
    the paths of both workers. Before, both went to the browser as they were."""
    store = e.StoreFailure(
        "SQLite store '/srv/wr/data/runtime.sqlite3' failed to write (disk full)",
        metadata={"path": "/srv/wr/data/runtime.sqlite3"},
    )
    conflict = e.WorkspaceConflict(
        "workspace.root: /srv/projects/app overlaps /srv/projects held by w2",
        metadata={"field": "workspace.root", "path": "/srv/projects/app", "held_path": "/srv/x"},
    )
    for exc in (store, conflict):
        body = bytes(error_response(from_client_error(exc)).body).decode()
        assert "/srv" not in body, body
    assert from_client_error(store).metadata == {}
    assert from_client_error(conflict).metadata == {"field": "workspace.root"}
    assert scrub("read /etc/passwd and a/b, 1/2") == "read <path> and a/b, 1/2"
