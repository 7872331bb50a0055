"""``tls = true`` with no CA file verifies the server against the system's trust roots: the typed
client (``RuntimeClient(target, tls=True)``), the CLI (``--tls``) and the Backend's remote runtime
config (``tls = true``). The system roots are pointed at a test CA the way grpc honours it
(``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH``, read by grpc when it first loads the default roots, so the
clients run in subprocesses). Two real ``serve`` processes over TLS: one whose certificate that
CA signed, one signed by another CA. The first connects; the second fails with a typed
``Unavailable`` (UNAVAILABLE) whose message says first that the server's certificate is not
trusted (grpc's own message alone starts "failed to connect to all addresses")."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx
from backend_serving import CSRF, eventually, start_backend
from serving import REPO_ROOT, ServeProcessFactory, env
from tlsfiles import Certs, make_certs

BOUND = 60.0  # a safety net on a shared machine, never a speed assertion

_CLIENT = """
import asyncio, json, sys
from runtime_client import RuntimeClient
from runtime_client.errors import RuntimeServiceError

async def main() -> None:
    out = {}
    for name, target in json.loads(sys.argv[1]).items():
        async with RuntimeClient(target, tls=True, timeout=20) as client:
            try:
                out[name] = {"ok": (await client.get_runtime()).runtime_id}
            except RuntimeServiceError as exc:
                code, message = str(exc.code), str(exc)
                out[name] = {"error": type(exc).__name__, "code": code, "message": message}
    print(json.dumps(out))

asyncio.run(main())
"""


async def _tls_runtime(serve_process: ServeProcessFactory, data: Path, certs: Certs) -> int:
    args = ("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key))
    return (await serve_process(data, extra=args)).port


async def _run(*argv: str, roots: Path) -> tuple[int, str, str]:
    """A client subprocess whose system roots are ``roots``: (exit code, stdout, stderr)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *argv,
        env={**env(), "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(roots)}, cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_tls_true_verifies_against_the_system_roots(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    trusted = make_certs(tmp_path / "trusted")
    stranger = make_certs(tmp_path / "stranger")  # another CA: not in the system roots
    good = await _tls_runtime(serve_process, tmp_path / "good", trusted)
    bad = await _tls_runtime(serve_process, tmp_path / "bad", stranger)
    targets = {"good": f"127.0.0.1:{good}", "bad": f"127.0.0.1:{bad}"}

    # the typed client
    rc, stdout, stderr = await _run("-c", _CLIENT, json.dumps(targets), roots=trusted.ca)
    assert rc == 0, stderr
    out = json.loads(stdout)
    assert out["good"]["ok"], out
    assert out["bad"]["error"] == "Unavailable", out
    assert out["bad"]["code"] == "UNAVAILABLE", out
    assert out["bad"]["message"].startswith("the server's TLS certificate is not trusted"), out
    assert "CERTIFICATE_VERIFY_FAILED" in out["bad"]["message"], out  # grpc's own words too

    # the CLI: --tls and no CA file
    cli = ("-m", "runtime_server.cli", "runtime", "--tls", "--json", "--target")
    rc, stdout, stderr = await _run(*cli, targets["good"], roots=trusted.ca)
    assert rc == 0, stderr
    assert json.loads(stdout)["runtime_id"] == out["good"]["ok"]
    rc, stdout, stderr = await _run(*cli, targets["bad"], roots=trusted.ca)
    assert rc != 0, stdout
    assert "UNAVAILABLE" in stderr, stderr
    assert "TLS certificate is not trusted" in stderr, stderr


BACKEND_CONFIG = """\
[companion]
profile = "echo"

[[runtimes]]
target = "127.0.0.1:{good}"
alias = "trusted"
tls = true

[[runtimes]]
target = "127.0.0.1:{bad}"
alias = "stranger"
tls = true
"""


async def test_the_backends_tls_true_runtime_verifies_against_the_system_roots(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    trusted = make_certs(tmp_path / "trusted")
    stranger = make_certs(tmp_path / "stranger")
    good = await _tls_runtime(serve_process, tmp_path / "good", trusted)
    bad = await _tls_runtime(serve_process, tmp_path / "bad", stranger)
    backend = await start_backend(
        tmp_path,
        BACKEND_CONFIG.format(good=good, bad=bad),
        {"GRPC_DEFAULT_SSL_ROOTS_FILE_PATH": str(trusted.ca)},
    )
    try:
        async with httpx.AsyncClient(base_url=backend.url, headers=CSRF, timeout=BOUND) as http:
            found: dict[str, dict[str, Any]] = {}

            async def settled() -> bool:
                runtimes = (await http.get("/api/runtimes")).json()["runtimes"]
                found.update({r["alias"]: r for r in runtimes})
                return found["trusted"]["state"] == "READY" and bool(
                    found["stranger"]["last_error"]
                )

            await eventually(settled, timeout=BOUND)
            assert found["stranger"]["state"] != "READY", found
            assert found["stranger"]["last_error"] == (
                "TLS handshake failed: CERTIFICATE_VERIFY_FAILED: unable to get local issuer "
                "certificate (UNAVAILABLE)"
            ), found
    finally:
        backend.terminate()
