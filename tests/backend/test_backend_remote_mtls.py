"""The Backend reaches remote runtimes over TLS with a client certificate (mutual TLS) and a bearer
token, as the Kubernetes manifests run them: real ``worker-runtime serve`` subprocesses with
``--auth-token-file`` and ``--tls-cert/--tls-key/--tls-client-ca``, a real ``worker-backend serve``
subprocess whose ``[[runtimes]]`` tables name the TLS files relative to the config file, driven
through its HTTP API. A runtime reached with the wrong CA, or without the client certificate the
runtime requires, is shown not READY with a reason while the Backend keeps serving the others."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
from backend_serving import CSRF, BackendProcess, eventually, start_backend
from serving import ServeProcessFactory
from tlsfiles import make_certs

BOUND = 30.0  # a safety net on a shared machine, never a speed assertion
TOKEN = "mtls-runtime-tok-5c2e9b71d04a"
CONFIG = """\
[companion]
profile = "echo"

[[runtimes]]                 # mutual TLS + token: the way the StatefulSet's pods run
target = "127.0.0.1:{good}"
alias = "mtls"
token_env = "TEST_MTLS_TOKEN"
ca_file = "tls/ca.pem"
cert_file = "tls/client.pem"
key_file = "tls/client.key"

[[runtimes]]                 # the same runtime, verified against a CA that did not sign it
target = "localhost:{good}"
alias = "wrong-ca"
token_env = "TEST_MTLS_TOKEN"
ca_file = "other/ca.pem"
cert_file = "tls/client.pem"
key_file = "tls/client.key"

[[runtimes]]                 # a runtime that requires a client certificate, given none
target = "127.0.0.1:{bare}"
alias = "no-client-cert"
token_env = "TEST_MTLS_TOKEN"
ca_file = "tls/ca.pem"
"""


async def _runtime(serve_process: ServeProcessFactory, tmp_path: Path, name: str) -> int:
    tls = tmp_path / "tls"
    args: tuple[str, ...] = ("--auth-token-file", str(tmp_path / "runtime.token"))
    args += ("--tls-cert", str(tls / "server.pem"), "--tls-key", str(tls / "server.key"))
    args += ("--tls-client-ca", str(tls / "ca.pem"))
    return (await serve_process(tmp_path / name, extra=args)).port


async def _by_alias(http: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    runtimes = (await http.get("/api/runtimes")).json()["runtimes"]
    return {r["alias"]: r for r in runtimes}


async def test_the_backend_drives_a_runtime_over_mtls_and_reports_bad_tls_as_not_ready(
    tmp_path: Path, serve_process: ServeProcessFactory
) -> None:
    make_certs(tmp_path / "tls")
    make_certs(tmp_path / "other")  # another CA
    (tmp_path / "runtime.token").write_text(TOKEN + "\n")
    (tmp_path / "runtime.token").chmod(0o600)  # serve refuses a token file others may read
    good = await _runtime(serve_process, tmp_path, "good-data")
    bare = await _runtime(serve_process, tmp_path, "bare-data")
    backend: BackendProcess = await start_backend(
        tmp_path, CONFIG.format(good=good, bare=bare), {"TEST_MTLS_TOKEN": TOKEN}
    )
    bodies: list[str] = []
    try:
        async with httpx.AsyncClient(base_url=backend.url, headers=CSRF, timeout=BOUND) as http:
            found: dict[str, dict[str, Any]] = {}

            async def settled() -> bool:
                found.update(await _by_alias(http))
                return found["mtls"]["state"] == "READY" and all(
                    found[a]["state"] not in ("CONNECTING", "READY") and found[a]["last_error"]
                    for a in ("wrong-ca", "no-client-cert")
                )

            await eventually(settled, timeout=BOUND)
            rid = found["mtls"]["runtime_id"]
            assert rid
            assert "echo" in {p["name"] for p in found["mtls"]["profiles"]}
            for alias in ("wrong-ca", "no-client-cert"):
                assert not found[alias]["runtime_id"], found[alias]  # never reached it
            # the reason names the TLS failure; the refused client certificate reads as a cut
            assert "CERTIFICATE_VERIFY_FAILED" in found["wrong-ca"]["last_error"]
            assert "UNAVAILABLE" in found["no-client-cert"]["last_error"]
            bodies.append(str(found))

            # the Backend keeps serving: its own health, the worker list, the good runtime
            health = await http.get("/healthz")
            assert health.status_code == 200
            assert health.json()["runtimes"]["READY"] == 2  # embedded + mtls
            listed = await http.get("/api/workers")
            assert listed.status_code == 200
            created = await http.post("/api/workers", json={"runtime_id": rid, "profile": "echo"})
            assert created.status_code == 201, created.text
            wid = created.json()["worker"]["worker_id"]
            base = f"/api/runtimes/{rid}/workers/{wid}"
            sent = await http.post(base + "/input", json={"text": "hello over mutual TLS"})
            assert sent.status_code == 202, sent.text
            run_id = sent.json()["run"]["run_id"]

            async def finished() -> bool:
                run = (await http.get(f"/api/runtimes/{rid}/runs/{run_id}")).json()["run"]
                return bool(run["state"] == "COMPLETED")

            await eventually(finished, timeout=BOUND)
            transcript = await http.get(base + "/transcript")
            texts = [e["message"]["text"] for e in transcript.json()["entries"]]
            assert len(texts) == 2, texts  # the input, then the echo's answer
            assert "hello over mutual TLS" in texts[1]
            workers = (await http.get("/api/workers")).json()["workers"]
            assert (rid, wid) in {(w["runtime_id"], w["worker"]["worker_id"]) for w in workers}
            bodies += [listed.text, created.text, sent.text, transcript.text]

            # still not READY a while later (the registry keeps probing and failing)
            await asyncio.sleep(1.0)
            later = await _by_alias(http)
            assert later["wrong-ca"]["state"] != "READY"
            assert later["no-client-cert"]["state"] != "READY"
    finally:
        backend.terminate()
    for text in [*bodies, backend.stderr()]:
        assert TOKEN not in text
