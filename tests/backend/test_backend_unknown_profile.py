"""Creating a worker on a profile no runtime offers, while every runtime is READY, is the
caller's mistake: 400 naming ``profile``. Before, it was 503 "the runtime is unavailable; retry
shortly" (the registry's NO_RUNTIME_AVAILABLE), so the console told a person with a typo to wait.
While a runtime is not READY (it may offer the profile once back), 503 stays right."""

from __future__ import annotations

from pathlib import Path

import httpx
from backend_serving import CSRF, start_backend

BOUND = 30.0


async def test_an_unknown_profile_is_a_400_naming_the_field(tmp_path: Path) -> None:
    backend = await start_backend(tmp_path, 'store = "memory"\n[companion]\nprofile = "echo"\n')
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=BOUND, headers=CSRF) as http:
            assert (await http.get("/api/workers")).json()["workers"]  # READY: the Companion
            refused = await http.post("/api/workers", json={"profile": "no-such-profile"})
            assert refused.status_code == 400, refused.text
            error = refused.json()["error"]
            assert error["metadata"]["field"] == "profile"
            assert "no-such-profile" in error["message"]
            assert "retry-after" not in refused.headers
            made = await http.post("/api/workers", json={"profile": "echo"})
            assert made.status_code == 201, made.text
    finally:
        backend.terminate()
