"""deploy/: the Kubernetes manifests validate offline against the schemas kubernetes-validate
ships (no cluster), hold together (ports, labels, probes, grace), and the StatefulSet's exact
container arguments start a real server — ports moved to free ones, paths to a temp dir — that
serves mTLS + token on its main port, SERVING on its plaintext health port and metrics."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import shlex
import sys
import tomllib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import kubernetes_validate
import pytest
import yaml
from test_health_port import SERVING, check, make_mtls_files
from test_metrics_endpoint import scrape, value

from runtime_client import RuntimeClient
from runtime_server.cli import serve_options
from runtime_server.runtime import parse_config

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY = REPO_ROOT / "deploy"
MANIFESTS = sorted((DEPLOY / "kubernetes").glob("*.yaml"))
K8S_VERSION = "1.31.0"  # the oldest release we support: ReadWriteOncePod and gRPC probes are GA
BOUND = 30.0  # seconds: a safety net on a shared machine, never a speed assertion

LIVENESS_SERVICE = "liveness"  # the health port's liveness service (README "Health for probes")


def _serve_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="worker-runtime serve")
    serve_options(parser)
    return parser


def documents() -> list[dict[str, Any]]:
    docs = []
    for path in MANIFESTS:
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def one(kind: str, name: str) -> dict[str, Any]:
    (found,) = [d for d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    return found


def test_the_manifests_validate_offline() -> None:
    assert {p.name for p in MANIFESTS} >= {
        "runtime-statefulset.yaml",
        "runtime-service.yaml",
        "runtime-pdb.yaml",
        "runtime-networkpolicy.yaml",
        "runtime-config.yaml",
        "backend.yaml",
        "secrets.example.yaml",
    }
    kinds = set()
    for doc in documents():
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any error
        kinds.add(doc["kind"])
    assert kinds == {
        "StatefulSet", "Service", "PodDisruptionBudget", "NetworkPolicy", "ConfigMap",
        "Secret", "Deployment",
    }  # fmt: skip


def test_a_broken_manifest_is_caught() -> None:
    """The validation above has teeth: a typo'd field and a wrong type are refused."""
    sts = one("StatefulSet", "worker-runtime")
    typo = yaml.safe_load(yaml.safe_dump(sts))
    typo["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(typo, K8S_VERSION, strict=True)
    wrong = yaml.safe_load(yaml.safe_dump(sts))
    wrong["spec"]["replicas"] = "three"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(wrong, K8S_VERSION, strict=True)


def _container() -> dict[str, Any]:
    container: dict[str, Any]
    (container,) = one("StatefulSet", "worker-runtime")["spec"]["template"]["spec"]["containers"]
    return container


def _flags(args: list[str]) -> dict[str, str]:
    return dict(a.removeprefix("--").split("=", 1) for a in args if a.startswith("--"))


def test_the_statefulset_holds_together() -> None:
    sts = one("StatefulSet", "worker-runtime")
    pod = sts["spec"]["template"]["spec"]
    container = _container()
    args = container["args"]
    assert args[0] == "serve"
    parsed = _serve_parser().parse_args(args[1:])  # every flag exists
    flags = _flags(args)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert flags["listen"] == f"0.0.0.0:{ports['grpc']}"
    assert flags["health-listen"] == f"0.0.0.0:{ports['health']}"
    assert flags["metrics-listen"] == f"0.0.0.0:{ports['metrics']}"
    # native gRPC probes on the plaintext health port (the main port requires mTLS)
    assert parsed.tls_client_ca is not None
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == ports["health"], probe
    # startup and readiness ask for the overall status; liveness for the service that stays
    # SERVING while the disk is full (a restart would not free it)
    assert "service" not in container["startupProbe"]["grpc"]
    assert "service" not in container["readinessProbe"]["grpc"]
    assert container["livenessProbe"]["grpc"]["service"] == LIVENESS_SERVICE
    # SIGTERM: the kubelet waits longer than --grace plus a flush
    assert pod["terminationGracePeriodSeconds"] >= parsed.grace + 15
    # non-root, read-only root filesystem, no privilege escalation
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # one ReadWriteOncePod volume per pod, mounted at the data dir
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == flags["data-dir"]
    # config from the ConfigMap (and it parses), keys from a Secret, the token from a Secret file
    config = one("ConfigMap", "worker-runtime-config")
    assert flags["config"].endswith("/" + next(iter(config["data"])))
    parse_config(tomllib.loads(config["data"]["serve.toml"]))
    assert container["envFrom"][0]["secretRef"]["name"] == "worker-runtime-provider-keys"
    secrets = {d["metadata"]["name"] for d in documents() if d["kind"] == "Secret"}
    for volume in pod["volumes"]:
        if "secret" in volume:
            assert volume["secret"]["secretName"] in secrets
    # the headless Service names each pod; the PDB and NetworkPolicy select the same pods
    labels = sts["spec"]["template"]["metadata"]["labels"]
    service = one("Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"
    for selector in (
        service["spec"]["selector"],
        one("PodDisruptionBudget", "worker-runtime")["spec"]["selector"]["matchLabels"],
        one("NetworkPolicy", "worker-runtime")["spec"]["podSelector"]["matchLabels"],
    ):
        assert selector.items() <= labels.items()
    # only the Backend reaches the gRPC port
    policy = one("NetworkPolicy", "worker-runtime")
    grpc_rules = [r for r in policy["spec"]["ingress"] if r["ports"][0]["port"] == ports["grpc"]]
    (rule,) = grpc_rules
    backend = one("Deployment", "worker-backend")["spec"]["template"]["metadata"]["labels"]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "worker-backend"}}}
    ]
    assert backend["app.kubernetes.io/name"] == "worker-backend"


def test_the_containerfile_runs_serve_as_a_non_root_user_with_probe_and_metrics_ports() -> None:
    text = (DEPLOY / "Containerfile").read_text()
    logical = re.sub(r"\\\n\s*", " ", text)
    assert re.search(r"^FROM python:3\.\d+-slim", text, re.M)
    assert "pip wheel" in text  # builds the wheel
    (user,) = re.findall(r"^USER (\S+)", text, re.M)
    assert user.split(":")[0] not in ("0", "root")
    assert re.search(r"^VOLUME \[\"/var/lib/worker-runtime\"\]", text, re.M)
    assert re.search(r"^STOPSIGNAL SIGTERM", text, re.M)
    assert re.search(r'^ENTRYPOINT \["worker-runtime"\]', text, re.M)
    (cmd,) = re.findall(r"^CMD (\[.*\])$", logical, re.M)
    args = json.loads(cmd)
    parsed = _serve_parser().parse_args(args[1:])
    assert args[0] == "serve"
    assert parsed.health_listen == "0.0.0.0:50052"
    assert parsed.metrics_listen == "0.0.0.0:9464"
    assert str(parsed.data_dir) == "/var/lib/worker-runtime"
    # all interfaces, so callers must authenticate (serve refuses otherwise)
    assert parsed.listen.startswith("0.0.0.0:")
    assert parsed.auth_token_env == "WORKER_RUNTIME_TOKEN"
    assert not parsed.allow_unauthenticated


@dataclass
class Pod:
    """A ``worker-runtime serve`` started with the StatefulSet's exact container arguments."""

    proc: asyncio.subprocess.Process
    args: list[str]
    main: int  # the ports it chose
    health: int
    metrics: int
    stderr: Path


def _port(pattern: str, text: str) -> int:
    match = re.search(pattern, text)
    assert match, f"{pattern} not in the banner"
    return int(match[1])


@contextlib.asynccontextmanager
async def runtime_pod(tmp_path: Path) -> AsyncIterator[Pod]:
    """The StatefulSet's container args, ports moved to free ones and paths to ``tmp_path``
    (which gets ca.pem, server.pem/.key and client.pem/.key; the token is "deploy-test-token").
    Stops it with SIGTERM, as the kubelet does, and checks that it exits 0."""
    make_mtls_files(tmp_path)
    (tmp_path / "serve.toml").write_text(
        one("ConfigMap", "worker-runtime-config")["data"]["serve.toml"]
    )
    (tmp_path / "token").write_text("deploy-test-token\n")
    # the Secret files get the modes the StatefulSet mounts them with (serve refuses a token or
    # key every user may read, so Kubernetes' default 0644 would not start)
    volumes = one("StatefulSet", "worker-runtime")["spec"]["template"]["spec"]["volumes"]
    modes = {v["name"]: v["secret"]["defaultMode"] for v in volumes if "secret" in v}
    (tmp_path / "token").chmod(modes["auth"])
    (tmp_path / "server.key").chmod(modes["tls"])
    paths = {
        "/etc/worker-runtime/serve.toml": tmp_path / "serve.toml",
        "/etc/worker-runtime/auth/token": tmp_path / "token",
        "/etc/worker-runtime/tls/tls.crt": tmp_path / "server.pem",
        "/etc/worker-runtime/tls/tls.key": tmp_path / "server.key",
        "/etc/worker-runtime/tls/ca.crt": tmp_path / "ca.pem",
        "/var/lib/worker-runtime": tmp_path / "data",
    }
    args = []
    for arg in _container()["args"]:
        for pod_path, here in paths.items():
            arg = arg.replace(f"={pod_path}", f"={here}")
        args.append(re.sub(r"=0\.0\.0\.0:\d+$", "=127.0.0.1:0", arg))
    assert not [a for a in args if "/etc/" in a or "/var/lib" in a or "0.0.0.0" in a], args
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runtime_server.cli", *args, stdout=o, stderr=e, cwd=REPO_ROOT
        )
    try:
        async with asyncio.timeout(BOUND):
            while not re.search(r"health +127\.0\.0\.1:(\d+)", text := out.read_text()):
                assert proc.returncode is None, f"{shlex.join(args)}\n{err.read_text()}"
                await asyncio.sleep(0.02)
        main = _port(r"serving on 127\.0\.0\.1:(\d+)", text)
        health = _port(r"health +127\.0\.0\.1:(\d+)", text)
        metrics = _port(r"metrics +http://127\.0\.0\.1:(\d+)", text)
        yield Pod(proc, args, main, health, metrics, err)
    finally:
        if proc.returncode is None:
            proc.terminate()  # SIGTERM, as the kubelet sends it
        assert await asyncio.wait_for(proc.wait(), BOUND) == 0


async def test_a_server_starts_with_the_statefulsets_exact_arguments(tmp_path: Path) -> None:
    async with runtime_pod(tmp_path) as pod:
        assert await check(pod.health) == SERVING
        assert await check(pod.health, _container()["livenessProbe"]["grpc"]["service"]) == SERVING
        mtls = grpc.ssl_channel_credentials(
            (tmp_path / "ca.pem").read_bytes(),
            (tmp_path / "client.key").read_bytes(),
            (tmp_path / "client.pem").read_bytes(),
        )
        client = RuntimeClient(f"127.0.0.1:{pod.main}", tls=mtls, token="deploy-test-token")
        info = await client.get_runtime()
        assert "echo-slow" in {p.name for p in await client.list_profiles()}
        worker = (await client.create_worker(profile="echo")).worker
        accepted = await client.send_input(worker.worker_id, "hello from the pod")
        await client.wait_run(accepted.run.run_id, timeout=BOUND)
        await client.close()
        samples = await scrape(pod.metrics)
        assert value(samples, "worker_runtime_runs_finished_total", state="COMPLETED") == 1
        assert (tmp_path / "data" / "runtime.sqlite3").exists()
    # --log-format=json: every line is JSON naming the runtime
    for line in pod.stderr.read_text().splitlines():
        assert json.loads(line)["runtime_id"] == info.runtime_id


def test_every_secret_volume_is_mounted_private() -> None:
    # serve refuses a token file or TLS key that every user may read; Kubernetes mounts a Secret
    # 0644 unless told otherwise, so every Secret volume must set a mode without "other" bits
    secret_volumes = [
        (doc["metadata"]["name"], volume)
        for doc in documents()
        if doc.get("kind") in ("StatefulSet", "Deployment")
        for volume in doc["spec"]["template"]["spec"].get("volumes", [])
        if "secret" in volume
    ]
    assert secret_volumes
    for name, volume in secret_volumes:
        mode = volume["secret"].get("defaultMode")
        assert mode is not None, (name, volume["name"])
        assert mode & 0o007 == 0, (name, volume["name"], oct(mode))
