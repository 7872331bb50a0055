"""``GET /api/workers`` answers a bounded page, not every worker of every runtime.

Before, it encoded the registry's whole merged list on every call: with 20,000 workers on one
runtime (a runtime allows 100,000) one answer was 12.8 MB and about a second of the Backend's
event loop, during which no other request and no event stream moved — and the console asks
every 5 s from every open tab. Now a page holds at most ``limit`` workers (default 500, at most
1000, reported in ``/healthz`` as ``max_list_workers``): the Companion first, then the newest;
``total`` counts them all, ``truncated`` says more exist, ``offset`` pages on. A bad ``limit``
or ``offset`` is a 400 naming it. A real ``worker-backend serve`` (memory store) over HTTP.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from backend_serving import CSRF, start_backend

CONFIG = 'store = "memory"\n[companion]\nprofile = "echo"\n'
CREATED = 1004  # with the Companion: 1005 workers, past the largest page (1000)


async def test_the_worker_list_is_paged_companion_first_then_newest(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, CONFIG)
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=60) as http:
            health = (await http.get("/healthz")).json()
            assert health["limits"]["max_list_workers"] == 1000
            runtime_id = (await http.get("/api/runtimes")).json()["runtimes"][0]["runtime_id"]
            gate = asyncio.Semaphore(8)
            created: list[str] = []

            async def create(i: int) -> None:
                body = {"profile": "echo", "runtime_id": runtime_id, "display_name": f"w{i}"}
                async with gate:
                    resp = await http.post("/api/workers", json=body, headers=CSRF)
                assert resp.status_code == 201, resp.text
                created.append(resp.json()["worker"]["worker_id"])

            await asyncio.gather(*(create(i) for i in range(CREATED)))

            async def listed() -> bool:
                page = (await http.get("/api/workers?limit=1")).json()
                return bool(page["total"] == CREATED + 1)

            deadline = asyncio.get_running_loop().time() + 30
            while not await listed():  # the registry's cache follows the runtime's events
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.1)

            first = (await http.get("/api/workers")).json()
            assert len(first["workers"]) == 500
            assert first["total"] == CREATED + 1
            assert first["truncated"] is True
            assert first["workers"][0]["companion"] is True
            times = [w["worker"]["created_at"] for w in first["workers"][1:]]
            assert times == sorted(times, reverse=True)  # the newest next

            seen: list[str] = []
            offset = 0
            while True:
                page = (await http.get(f"/api/workers?limit=1000&offset={offset}")).json()
                seen += [w["worker"]["worker_id"] for w in page["workers"]]
                assert len(page["workers"]) <= 1000
                offset += len(page["workers"])
                if not page["truncated"]:
                    break
            assert len(seen) == len(set(seen)) == CREATED + 1
            assert set(created) <= set(seen)

            for query, field in (
                ("limit=0", "limit"),
                ("limit=1001", "limit"),
                ("limit=-1", "limit"),
                ("limit=abc", "limit"),
                ("offset=-1", "offset"),
                ("offset=" + "9" * 30, "offset"),
            ):
                resp = await http.get(f"/api/workers?{query}")
                assert resp.status_code == 400, (query, resp.text)
                assert resp.json()["error"]["metadata"]["field"] == field
    finally:
        backend.terminate()
    assert "Traceback" not in backend.stderr()
