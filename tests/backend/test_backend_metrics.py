"""The Backend's ``GET /metrics``, scraped from a real Backend subprocess (with a remote runtime
subprocess) and parsed with ``prometheus_client.parser``: request counts by route template and
status (a 404 too), open console streams, each runtime's state by alias — and no id in any label.
"""

from __future__ import annotations

import asyncio

from backend_serving import ConsoleFactory, eventually
from prometheus_client.parser import text_string_to_metric_families
from serving import START_TIMEOUT

BOUND = 30.0  # a safety net on a loaded machine, not a speed assertion
INPUT = "/api/runtimes/{runtime_id}/workers/{worker_id}/input"
RUN = "/api/runtimes/{runtime_id}/runs/{run_id}"
NO_RUN = "0190a0a0-0000-7000-8000-000000000000"  # well-formed, never created


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def test_metrics_count_requests_streams_and_runtime_states(console: ConsoleFactory) -> None:
    c = await console()
    embedded_id, remote_id = await c.runtime_ids()
    worker_id = await c.create_worker(remote_id, "slow")
    run = await c.send(remote_id, worker_id, "one two")
    missing = await c.call("GET", f"/api/runtimes/{remote_id}/runs/{NO_RUN}")
    assert missing.status_code == 404

    events = f"/api/runtimes/{remote_id}/workers/{worker_id}/events"
    async with c.http.stream("GET", events) as stream:
        assert stream.status_code == 200
        async with asyncio.timeout(BOUND):
            assert b"retry:" in await anext(stream.aiter_bytes())
        resp = await c.http.get("/metrics")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/plain")
        samples = _samples(resp.text)
        assert _value(samples, "worker_backend_console_streams_open") == 1

    created = _value(
        samples,
        "worker_backend_http_requests_total",
        method="POST",
        route="/api/workers",
        status="201",
    )
    assert created == 1
    assert (
        _value(
            samples, "worker_backend_http_requests_total", method="POST", route=INPUT, status="202"
        )
        == 1
    )
    assert (
        _value(samples, "worker_backend_http_requests_total", method="GET", route=RUN, status="404")
        == 1
    )
    assert (
        _value(samples, "worker_backend_http_request_seconds_count", method="GET", route=RUN) >= 1
    )
    for alias in ("embedded", "remote"):
        assert _value(samples, "worker_backend_runtime_state", alias=alias, state="READY") == 1
        assert (
            _value(samples, "worker_backend_runtime_state", alias=alias, state="UNREACHABLE") == 0
        )

    # no id is ever a label value: every id this test saw, against every label of every sample
    ids = {embedded_id, remote_id, worker_id, run["run_id"], NO_RUN}
    labels = {v for (_, pairs) in samples for _, v in pairs}
    assert not any(i in v for i in ids for v in labels)

    # the stream closed; the remote runtime crashes: its state flips, the embedded one stays
    c.remote.kill9()

    async def remote_unreachable() -> bool:
        now = _samples((await c.http.get("/metrics")).text)
        return (
            _value(now, "worker_backend_runtime_state", alias="remote", state="UNREACHABLE") == 1
            and _value(now, "worker_backend_runtime_state", alias="remote", state="READY") == 0
            and _value(now, "worker_backend_console_streams_open") == 0
        )

    await eventually(remote_unreachable, timeout=START_TIMEOUT)
    final = _samples((await c.http.get("/metrics")).text)
    assert _value(final, "worker_backend_runtime_state", alias="embedded", state="READY") == 1
    # the scrapes are requests too, under their own route
    assert (
        _value(
            final,
            "worker_backend_http_requests_total",
            method="GET",
            route="/metrics",
            status="200",
        )
        >= 2
    )


async def test_metrics_need_no_login_when_the_console_has_a_token(console: ConsoleFactory) -> None:
    c = await console(token="console-tok-5b8e")
    assert (await c.call("GET", "/api/workers")).status_code == 401
    resp = await c.http.get("/metrics")
    assert resp.status_code == 200
    samples = _samples(resp.text)
    refused = _value(
        samples,
        "worker_backend_http_requests_total",
        method="GET",
        route="/api/workers",
        status="401",
    )
    assert refused == 1  # requests the security layer refuses are counted too
    assert "console-tok-5b8e" not in resp.text
