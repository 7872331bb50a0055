"""Creating a worker on a profile no runtime offers, while every runtime is READY, is the
caller's mistake: 400 naming ``profile``. Before, it was 503 "the runtime is unavailable; retry
shortly" (the registry's NO_RUNTIME_AVAILABLE), so the console told a person with a typo to wait.
While a runtime is not READY (it may offer the profile once back), 503 stays right."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import httpx
from backend_serving import CSRF, start_backend
from serving import ServeProcessFactory

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


async def test_a_profile_only_a_replaced_runtime_offers_is_a_400_not_retry_shortly(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    """A runtime in IDENTITY_CHANGED never comes back by itself (its address answers as another
    runtime; the Backend's config must change). When it was the only one offering the profile,
    the answer was 503 "retry shortly", forever. Now it is a 400 naming ``profile`` that says
    which runtime changed identity; a runtime that may come back (UNREACHABLE) keeps the 503."""
    config = tmp_path / "remote.toml"
    config.write_text('[profiles.slow]\nprovider = "builtin"\n', encoding="utf-8")
    remote = await serve_process(tmp_path / "remote-data", config=config)
    backend = await start_backend(
        tmp_path,
        'store = "memory"\n[companion]\nprofile = "echo"\n'
        f'[[runtimes]]\ntarget = "127.0.0.1:{remote.port}"\nalias = "lab"\n'
        f'expected_runtime_id = "{uuid.uuid4()}"\n'
        '[[runtimes]]\ntarget = "127.0.0.1:1"\nalias = "gone"\n',
    )
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=BOUND, headers=CSRF) as http:

            async def states() -> dict[str, str]:
                runtimes = (await http.get("/api/runtimes")).json()["runtimes"]
                return {r["alias"]: r["state"] for r in runtimes}

            deadline = asyncio.get_running_loop().time() + BOUND
            while (await states()).get("lab") != "IDENTITY_CHANGED":
                assert asyncio.get_running_loop().time() < deadline, await states()
                await asyncio.sleep(0.1)
            assert (await states())["gone"] == "UNREACHABLE"
            # "gone" may come back with any profile: 503 stays right while it is away
            waiting = await http.post("/api/workers", json={"profile": "slow"})
            assert waiting.status_code == 503, waiting.text
    finally:
        backend.terminate()

    backend = await start_backend(
        tmp_path,
        'store = "memory"\n[companion]\nprofile = "echo"\n'
        f'[[runtimes]]\ntarget = "127.0.0.1:{remote.port}"\nalias = "lab"\n'
        f'expected_runtime_id = "{uuid.uuid4()}"\n',
    )
    try:
        async with httpx.AsyncClient(base_url=backend.url, timeout=BOUND, headers=CSRF) as http:
            deadline = asyncio.get_running_loop().time() + BOUND
            while True:
                runtimes = (await http.get("/api/runtimes")).json()["runtimes"]
                if any(r["state"] == "IDENTITY_CHANGED" for r in runtimes):
                    break
                assert asyncio.get_running_loop().time() < deadline, runtimes
                await asyncio.sleep(0.1)
            refused = await http.post("/api/workers", json={"profile": "slow"})
            assert refused.status_code == 400, refused.text
            assert "retry-after" not in refused.headers
            error = refused.json()["error"]
            assert error["metadata"]["field"] == "profile"
            assert "'lab'" in error["message"]
            assert "identity" in error["message"]
    finally:
        backend.terminate()
