"""No request can add label values to the Backend's metrics.

HTTP lets a client name any method token, and the request counter was labelled with it as sent:
each new name (``AAA1``, ``AAA2``, ...) was a new series in the counter and the latency histogram,
kept for the process's life and in every scrape — an anonymous client (the security layer's 401
and 403 are counted too) could grow the Backend's memory and the scrape without bound. Now an
unknown method is counted as ``other``. A real Backend subprocess, requests over a raw socket.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlparse

from backend_serving import ConsoleFactory
from prometheus_client.parser import text_string_to_metric_families

ODD = [f"ZZQ{i}" for i in range(40)]


async def _raw(url: str, method: str) -> bytes:
    parsed = urlparse(url)
    reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
    writer.write(f"{method} /api/workers HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    await writer.drain()
    status = await reader.readline()
    writer.close()
    await writer.wait_closed()
    return status


async def test_odd_methods_are_counted_under_one_label(console: ConsoleFactory) -> None:
    c = await console(token="console-tok-metrics-3")
    for method in ODD:
        assert b" 403 " in await _raw(c.backend.url, method)  # refused (CSRF), but counted
    text = (await c.http.get("/metrics")).text
    methods = set()
    other = 0.0
    for family in text_string_to_metric_families(text):
        if family.name != "worker_backend_http_requests":
            continue
        for sample in family.samples:
            if sample.name.endswith("_total"):
                methods.add(sample.labels["method"])
                if sample.labels["method"] == "other":
                    other += sample.value
    assert not methods & set(ODD)
    assert other >= len(ODD)
    assert "ZZQ" not in text
