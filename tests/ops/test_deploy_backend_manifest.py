"""deploy/kubernetes/backend.yaml is real: its ConfigMap's backend.toml is accepted by the Backend's
own config loader (each runtime pod by name, mutual TLS files from the mounted Secret, the tokens
from environment variables set from Secrets), the Deployment holds together with it, and its exact
container arguments start a real ``worker-backend serve`` — ports moved to free ones, paths to a
temp dir — that reaches a real runtime started with the StatefulSet's exact arguments (mutual TLS
+ token) and reports it READY, behind the console's login token."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import shlex
import sys
import tomllib
from pathlib import Path
from typing import Any

import httpx
from serving import unassigned_port  # down pods: nothing listens there
from test_deploy_manifests import BOUND, DEPLOY, REPO_ROOT, documents, one, runtime_pod

from backend.cli import parser as backend_parser
from backend.config import exposure_error, load_config

MOUNT = "/etc/worker-backend"
SECRETS = {  # stand-ins for the Secrets' values, by (secret, key)
    ("worker-backend-console", "token"): "console-deploy-t0k",
    ("worker-runtime-auth", "token"): "deploy-test-token",  # the runtime pod's (runtime_pod)
}
CSRF = {"x-worker-console": "1"}


def _container() -> dict[str, Any]:
    pod = one("Deployment", "worker-backend")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    return dict(container)


def _env(container: dict[str, Any]) -> dict[str, str]:
    """The container's environment, each secretKeyRef resolved from SECRETS."""
    out = {}
    for var in container["env"]:
        ref = var["valueFrom"]["secretKeyRef"]
        out[var["name"]] = SECRETS[ref["name"], ref["key"]]
    return out


def _serve_args() -> argparse.Namespace:
    args = _container()["args"]
    assert args[0] == "serve"
    return backend_parser().parse_args(args)  # every flag exists


def test_the_configmap_is_a_backend_config_and_the_deployment_holds_together(
    tmp_path: Path,
) -> None:
    container = _container()
    assert container["command"] == ["worker-backend"]
    # the runtimes' image: deploy/Containerfile installs the wheel, which holds both commands
    sts = one("StatefulSet", "worker-runtime")["spec"]["template"]["spec"]
    assert container["image"] == sts["containers"][0]["image"]
    containerfile = (DEPLOY / "Containerfile").read_text()
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert set(pyproject["project"]["scripts"]) == {"worker-runtime", "worker-backend"}
    for package in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]:
        name = package.rstrip("*")
        assert re.search(rf"^COPY {name} {name}$", containerfile, re.M), name

    args = _serve_args()
    text = one("ConfigMap", "worker-backend-config")["data"]["backend.toml"]
    env = _env(container)
    (mounted := tmp_path / "backend.toml").write_text(text)
    config = load_config(mounted, env=env)  # the real loader, as serve reads it
    # the config is the mounted file
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert str(args.config) == mounts["config"]
    # each runtime pod by its stable name through the headless Service, on the gRPC port
    grpc_port = one("StatefulSet", "worker-runtime")["spec"]["template"]["spec"]["containers"][0]
    (port,) = [p["containerPort"] for p in grpc_port["ports"] if p["name"] == "grpc"]
    replicas = one("StatefulSet", "worker-runtime")["spec"]["replicas"]
    assert [r.target for r in config.runtimes] == [
        f"worker-runtime-{i}.worker-runtime:{port}" for i in range(replicas)
    ]
    for remote in config.runtimes:
        assert remote.token == SECRETS["worker-runtime-auth", "token"]
        assert remote.tls is not None
        files = (remote.tls.ca_file, remote.tls.cert_file, remote.tls.key_file)
        assert files == tuple(f"{mounts['tls']}/{n}" for n in ("ca.crt", "tls.crt", "tls.key"))
    # the console's token from a Secret; so the Backend may listen on the pod's address
    assert config.token == SECRETS["worker-backend-console", "token"]
    assert not config.allow_unauthenticated
    assert args.listen == "0.0.0.0:8080"
    exposed = dataclasses.replace(config, listen=args.listen)
    assert exposure_error(exposed) is None
    assert exposure_error(dataclasses.replace(exposed, token=None)) is not None
    # the data dir is a writable volume (the root filesystem is read-only)
    assert str(args.data_dir) == mounts["data"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    # probes on /healthz of the named port
    (http,) = container["ports"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": http["name"]}
    # every Secret it uses is one of the example Secrets, with that key
    examples = {d["metadata"]["name"]: d for d in documents() if d["kind"] == "Secret"}
    for secret, key in SECRETS:
        assert key in examples[secret]["stringData"]
    pod = one("Deployment", "worker-backend")["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["secretName"] in examples


async def test_the_backend_starts_with_the_deployments_exact_arguments_and_reaches_a_pod(
    tmp_path: Path,
) -> None:
    runtime_dir, backend_dir = tmp_path / "runtime", tmp_path / "backend"
    runtime_dir.mkdir()
    backend_dir.mkdir()
    async with runtime_pod(runtime_dir) as pod:
        # the pods' names become loopback ports: runtime-0 is the one started, the others are
        # down (nothing listens there)
        text = one("ConfigMap", "worker-backend-config")["data"]["backend.toml"]
        targets = {
            "worker-runtime-0.worker-runtime:50051": f"127.0.0.1:{pod.main}",
            "worker-runtime-1.worker-runtime:50051": f"127.0.0.1:{unassigned_port()}",
            "worker-runtime-2.worker-runtime:50051": f"127.0.0.1:{unassigned_port()}",
        }
        files = {  # the client certificate from tests/tlsfiles (signed by the runtimes' CA)
            f"{MOUNT}/tls/ca.crt": runtime_dir / "ca.pem",
            f"{MOUNT}/tls/tls.crt": runtime_dir / "client.pem",
            f"{MOUNT}/tls/tls.key": runtime_dir / "client.key",
        }
        for old, new in [*targets.items(), *files.items()]:
            assert old in text, old
            text = text.replace(old, str(new))
        (backend_dir / "backend.toml").write_text(text)
        paths = {
            f"{MOUNT}/backend.toml": backend_dir / "backend.toml",
            "/var/lib/worker-backend": backend_dir / "data",
        }
        args = []
        for arg in _container()["args"]:
            for pod_path, here in paths.items():
                arg = arg.replace(f"={pod_path}", f"={here}")
            args.append(re.sub(r"=0\.0\.0\.0:\d+$", "=127.0.0.1:0", arg))
        assert not [a for a in args if "/etc/" in a or "/var/lib" in a or "0.0.0.0" in a], args
        env = {k: v for k, v in os.environ.items() if not k.startswith("WORKER_")}
        env |= {"PYTHONPATH": str(REPO_ROOT), **_env(_container())}
        out, err = backend_dir / "backend.out", backend_dir / "backend.err"
        with out.open("wb") as o, err.open("wb") as e:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "backend.cli", *args,
                stdout=o, stderr=e, cwd=REPO_ROOT, env=env,
            )  # fmt: skip
        try:
            banner = r"worker-backend serving on http://127\.0\.0\.1:(\d+)"
            async with asyncio.timeout(BOUND * 2):
                while not (found := re.search(banner, out.read_text())):
                    assert proc.returncode is None, f"{shlex.join(args)}\n{err.read_text()}"
                    await asyncio.sleep(0.05)
            base = f"http://127.0.0.1:{found[1]}"
            async with httpx.AsyncClient(base_url=base, headers=CSRF, timeout=BOUND) as http:
                assert (await http.get("/healthz")).status_code == 200  # the probes' path
                assert (await http.get("/api/runtimes")).status_code == 401  # the login token
                token = SECRETS["worker-backend-console", "token"]
                assert (await http.post("/api/login", json={"token": token})).status_code == 204
                states: dict[str, str] = {}
                async with asyncio.timeout(BOUND):
                    while states.get("runtime-0") != "READY" or "CONNECTING" in states.values():
                        runtimes = (await http.get("/api/runtimes")).json()["runtimes"]
                        states = {r["alias"]: r["state"] for r in runtimes}
                        await asyncio.sleep(0.05)
                assert states == {
                    "embedded": "READY",
                    "runtime-0": "READY",
                    "runtime-1": "UNREACHABLE",
                    "runtime-2": "UNREACHABLE",
                }
        finally:
            if proc.returncode is None:
                proc.terminate()
            await asyncio.wait_for(proc.wait(), BOUND)
        for secret in SECRETS.values():
            assert secret not in err.read_text()
