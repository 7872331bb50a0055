"""Interop: an independent gRPC client — ``buf curl`` (Go, connect-go) with no proto files, only
server reflection — drives the real server: unary calls with JSON bodies, a server stream, an
error with its google.rpc.Status details, health, and bearer auth."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from google.rpc import error_details_pb2

from runtime_client import RunState

if TYPE_CHECKING:
    from serving import Served, ServeFactory

BUF = Path(sys.executable).parent / "buf"
BOUND = 30.0
V1 = "worker_runtime.v1"

pytestmark = pytest.mark.skipif(not BUF.exists(), reason="buf (the buf-bin wheel) is not installed")


class Curl:
    def __init__(self, target: str) -> None:
        self.base = f"http://{target}"

    def argv(self, method: str, data: Any = None, *extra: str) -> list[str]:
        argv = [str(BUF), "curl", "--http2-prior-knowledge", "--protocol", "grpc", "--reflect"]
        argv += ["--emit-defaults", *extra]
        if data is not None:
            argv += ["-d", json.dumps(data)]
        return [*argv, f"{self.base}/{method}"]

    async def __call__(self, method: str, data: Any = None, *extra: str) -> tuple[int, Any, Any]:
        """(exit code, stdout JSON or None, stderr JSON or stderr text)."""
        proc = await asyncio.create_subprocess_exec(
            *self.argv(method, data, *extra),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), BOUND)
        rc = proc.returncode
        assert rc is not None
        return rc, json.loads(out) if out.strip() else None, _maybe_json(err.decode())


def _maybe_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def documents(text: str) -> tuple[list[Any], str]:
    """The complete JSON documents at the start of ``text`` (buf prints one per message) and the
    unparsed rest."""
    decoder = json.JSONDecoder()
    docs: list[Any] = []
    pos = 0
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        try:
            doc, end = decoder.raw_decode(text, pos)
        except ValueError:
            return docs, text[pos:]
        docs.append(doc)
        pos = end


@pytest.fixture
async def curl(served: Served) -> Curl:
    return Curl(served.target)


async def test_unary_get_runtime(served: Served, curl: Curl) -> None:
    rc, out, err = await curl(f"{V1}.ManagementService/GetRuntime")
    assert rc == 0, err
    runtime = out["runtime"]
    assert runtime["runtimeId"] == served.runtime.runtime_id
    assert runtime["state"] == "RUNTIME_STATE_SERVING"
    assert "echo" in runtime["capabilities"]["profiles"]
    assert int(runtime["limits"]["maxPageSize"]) > 0


async def test_unary_create_worker_and_send_input_with_json(served: Served, curl: Curl) -> None:
    rc, out, err = await curl(
        f"{V1}.CatalogService/CreateWorker",
        {"display_name": "from buf", "labels": {"team": "interop"}, "request_id": "buf-1"},
    )
    assert rc == 0, err
    worker = out["worker"]
    assert worker["state"] == "WORKER_STATE_IDLE"
    assert worker["labels"] == {"team": "interop"}
    seen = await served.client.get_worker(worker["workerId"])
    assert seen.display_name == "from buf"

    rc, again, err = await curl(
        f"{V1}.CatalogService/CreateWorker",
        {"display_name": "from buf", "labels": {"team": "interop"}, "request_id": "buf-1"},
    )
    assert rc == 0, err
    assert again["worker"]["workerId"] == worker["workerId"]  # idempotent

    rc, out, err = await curl(
        f"{V1}.InteractionService/SendInput",
        {"worker_id": worker["workerId"], "text": "hello from go"},
    )
    assert rc == 0, err
    run = out["run"]
    assert run["workerId"] == worker["workerId"]
    assert run["state"] in ("RUN_STATE_RUNNING", "RUN_STATE_QUEUED")
    assert int(out["seq"]) > 0
    done = await served.client.wait_run(run["runId"], timeout=BOUND)
    assert done.state is RunState.COMPLETED
    transcript = await served.client.get_transcript(worker["workerId"])
    assert [e.message.text for e in transcript.items] == ["hello from go"] * 2


async def test_server_stream_subscribe_events(served: Served, curl: Curl) -> None:
    client = served.client
    worker_id = (await client.create_worker(profile="slow")).worker.worker_id
    text = " ".join(f"word{i}" for i in range(15))
    proc = await asyncio.create_subprocess_exec(
        *curl.argv(f"{V1}.ObservationService/SubscribeEvents", {"after_seq": 0}),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    events: list[Any] = []
    buffer = ""
    try:
        async with asyncio.timeout(BOUND):
            # the WorkerCreated replay arrives first: the stream is up; now start the run
            accepted = None
            while not any("runFinished" in e for e in events):
                chunk = await proc.stdout.read(65536)
                assert chunk, (await proc.stderr.read()).decode() if proc.stderr else "EOF"
                docs, buffer = documents(buffer + chunk.decode())
                events.extend(docs)
                if events and accepted is None:
                    accepted = await client.send_input(worker_id, text)
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
    seqs = [int(e["seq"]) for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # replay then tail, no gap
    assert "workerCreated" in events[0]
    deltas = "".join(e["textDelta"]["text"] for e in events if "textDelta" in e)
    assert deltas == text
    (finished,) = [e["runFinished"]["run"] for e in events if "runFinished" in e]
    assert accepted is not None
    assert finished["runId"] == accepted.run.run_id
    assert finished["state"] == "RUN_STATE_COMPLETED"


async def test_error_carries_status_details_with_error_info(curl: Curl) -> None:
    unknown = "0190a0a0-0000-7000-8000-000000000000"
    rc, out, err = await curl(f"{V1}.CatalogService/GetWorker", {"worker_id": unknown})
    assert rc != 0
    assert out is None
    assert err["code"] == "not_found"
    assert unknown in err["message"]
    (detail,) = err["details"]
    assert detail["type"] == "google.rpc.ErrorInfo"
    raw = detail["value"]
    info = error_details_pb2.ErrorInfo.FromString(base64.b64decode(raw + "=" * (-len(raw) % 4)))
    assert (info.reason, info.domain) == ("WORKER_NOT_FOUND", "worker-runtime")
    assert info.metadata["worker_id"] == unknown

    rc, _, err = await curl(f"{V1}.InteractionService/SendInput", {"worker_id": "not-a-uuid"})
    assert rc != 0
    assert err["code"] in ("invalid_argument", "not_found")


async def test_health_over_buf_curl(curl: Curl) -> None:
    for service in ("", f"{V1}.ObservationService"):
        rc, out, err = await curl("grpc.health.v1.Health/Check", {"service": service})
        assert rc == 0, err
        assert out == {"status": "SERVING"}
    rc, _, err = await curl("grpc.health.v1.Health/Check", {"service": "no.such.Service"})
    assert rc != 0
    assert err["code"] == "not_found"


async def test_bearer_auth_over_buf_curl(serve: ServeFactory) -> None:
    token = "interop-token-5a7d"
    served = await serve(auth_token=token)
    curl = Curl(served.target)
    header = f"Authorization: Bearer {token}"
    rc, out, err = await curl(
        f"{V1}.ManagementService/GetRuntime", None, "-H", header, "--reflect-header", header
    )
    assert rc == 0, err
    assert out["runtime"]["authRequired"] is True
    rc, _, err = await curl(
        f"{V1}.ManagementService/GetRuntime", None, "--reflect-header", header
    )  # reflection allowed, the call itself not
    assert rc != 0
    assert err["code"] == "unauthenticated"
    rc, _, err = await curl("grpc.health.v1.Health/Check", None, "--reflect-header", header)
    assert rc == 0, err
