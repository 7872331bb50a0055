"""``--health-listen``: a plaintext port serving only grpc.health.v1, so Kubernetes' native gRPC
probes (which cannot speak TLS) can check a server whose main port requires mutual TLS. It says
NOT_SERVING until the store is open and recovered, SERVING while serving, NOT_SERVING while
draining."""

from __future__ import annotations

import asyncio
import re
import sys
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from tlsfiles import make_certs

from runtime_client import RuntimeClient
from runtime_server import Runtime
from runtime_server.grpc import OpsOptions, RuntimeServer
from runtime_server.runtime import parse_config
from runtime_server.store import MemoryStore, StoredState

REPO_ROOT = Path(__file__).resolve().parents[2]
BOUND = 30.0  # seconds: a safety net on a shared machine, never a speed assertion
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def make_mtls_files(d: Path) -> None:
    """ca.pem, server.pem/.key (for 127.0.0.1) and client.pem/.key in ``d`` (tests/tlsfiles)."""
    make_certs(d)


async def check(port: int, service: str = "") -> int:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=service), timeout=BOUND
        )
        return int(reply.status)


async def eventually_status(port: int, want: int) -> None:
    async with asyncio.timeout(BOUND):
        while await check(port) != want:  # noqa: ASYNC110 - polling another process's answer
            await asyncio.sleep(0.02)


async def test_health_port_answers_serving_while_the_main_port_requires_mtls(
    tmp_path: Path,
) -> None:
    make_mtls_files(tmp_path)
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "runtime_server.cli", "serve", "--listen", "127.0.0.1:0",
            "--store", "memory", "--tls-cert", str(tmp_path / "server.pem"),
            "--tls-key", str(tmp_path / "server.key"),
            "--tls-client-ca", str(tmp_path / "ca.pem"), "--health-listen", "127.0.0.1:0",
            stdout=o, stderr=e, cwd=REPO_ROOT,
        )  # fmt: skip
    try:
        async with asyncio.timeout(BOUND):
            while not (m := re.search(r"health +127\.0\.0\.1:(\d+)", out.read_text())):
                assert proc.returncode is None, err.read_text()
                await asyncio.sleep(0.02)
        health_port = int(m[1])
        main = re.search(r"serving on 127\.0\.0\.1:(\d+)", out.read_text())
        assert main, "the banner names the main port"
        main_port = int(main[1])
        assert await check(health_port) == SERVING
        assert await check(health_port, "worker_runtime.v1.CatalogService") == SERVING
        # the main port: plaintext is refused, a client certificate is required
        async with grpc.aio.insecure_channel(f"127.0.0.1:{main_port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=5
                )
            assert refused.value.code() is grpc.StatusCode.UNAVAILABLE
        no_cert = grpc.ssl_channel_credentials((tmp_path / "ca.pem").read_bytes())
        client = RuntimeClient(f"127.0.0.1:{main_port}", tls=no_cert)
        with pytest.raises(Exception):  # noqa: B017,PT011 - the handshake fails, however reported
            await client.get_runtime()
        await client.close()
        mtls = grpc.ssl_channel_credentials(
            (tmp_path / "ca.pem").read_bytes(),
            (tmp_path / "client.key").read_bytes(),
            (tmp_path / "client.pem").read_bytes(),
        )
        client = RuntimeClient(f"127.0.0.1:{main_port}", tls=mtls)
        assert (await client.get_runtime()).runtime_id
        await client.close()
        # only health lives on the health port
        async with grpc.aio.insecure_channel(f"127.0.0.1:{health_port}") as channel:
            call = channel.unary_unary("/worker_runtime.v1.ManagementService/GetRuntime")
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await call(b"", timeout=BOUND)
            assert missing.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        if proc.returncode is None:
            proc.terminate()
        assert await asyncio.wait_for(proc.wait(), BOUND) == 0


class GatedStore(MemoryStore):
    """A memory store whose open() waits for the test: the time a real store spends opening
    and recovering."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def open(self, new_runtime_id: str) -> StoredState:
        await self.gate.wait()
        return await super().open(new_runtime_id)


async def test_not_serving_until_the_store_is_open_and_while_draining() -> None:
    store = GatedStore()
    config = parse_config(
        {"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 50}}}}
    )
    runtime = Runtime(store=store, config=config)
    server = RuntimeServer(runtime, ops=OpsOptions(health_listen="127.0.0.1:0"))
    starting = asyncio.create_task(server.start("127.0.0.1:0"))
    # the health port listens before the store opens, and says NOT_SERVING
    async with asyncio.timeout(BOUND):
        while not server.health_port:  # noqa: ASYNC110 - polling, as eventually() does
            await asyncio.sleep(0.01)
    port = server.health_port
    assert await check(port) == NOT_SERVING
    assert not starting.done()
    store.gate.set()
    await starting
    await eventually_status(port, SERVING)
    # a long run keeps the drain going while we look
    client = RuntimeClient(f"127.0.0.1:{server.port}")
    worker = (await client.create_worker(profile="slow")).worker
    await client.send_input(worker.worker_id, " ".join(["word"] * 400))
    await client.close()
    stopping = asyncio.create_task(server.stop(3.0))  # the run ends INTERRUPTED after 3 s
    await eventually_status(port, NOT_SERVING)
    assert not stopping.done()
    await stopping
    with pytest.raises(grpc.aio.AioRpcError):
        await check(port)  # closed last, with the server
