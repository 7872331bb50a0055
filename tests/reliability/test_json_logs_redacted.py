"""``--log-format json``: a real ``serve`` (DEBUG logging, access log on) runs against a loopback
provider that echoes its credential back in error messages and content (the secret-scan shapes);
every stderr line must parse as one JSON object carrying ``runtime_id``, no line may contain a
piece of any key, and the access log must show each RPC once — a NOT_FOUND at WARNING with its
reason, the ids of what it was about."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from serving import ServeProcessFactory
from test_secret_scan import CONFIG, ENV, GATEWAY_KEY, KEY, URL_PASSWORD, leaks, respond

from engine.testing import LoopbackServer
from runtime_client import WorkerNotFound

# a well-formed id no worker has (a malformed one is INVALID_ARGUMENT, not NOT_FOUND)
UNKNOWN_WORKER = "0190a0a0-0000-7000-8000-00000000dead"

BOUND = 30.0  # seconds: a safety net on a shared machine, never a speed assertion
SHAPES = ["stream-error-message", "retryable-echo", "content-echo", "long-text-body"]


async def test_every_json_line_parses_names_the_runtime_and_leaks_no_key(
    serve_process: ServeProcessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV, KEY + "\n")
    async with LoopbackServer(default=respond) as provider:
        config = tmp_path / "providers.toml"
        userinfo_url = provider.url.replace("http://", f"http://user:{URL_PASSWORD}@")
        config.write_text(
            CONFIG.format(url=provider.url, env=ENV, gateway=GATEWAY_KEY, userinfo_url=userinfo_url)
        )
        sp = await serve_process(
            tmp_path / "data",
            config=config,
            extra=["--log-level", "DEBUG", "--log-format", "json", "--access-log", "all"],
        )
        client = sp.client()
        runs = []
        for profile in ("oa", "gateway", "userinfo"):
            for shape in SHAPES:
                worker = (await client.create_worker(profile=profile)).worker
                accepted = await client.send_input(worker.worker_id, f"please answer {shape}")
                runs.append(await client.wait_run(accepted.run.run_id, timeout=BOUND))
        with pytest.raises(WorkerNotFound):
            await client.get_worker(UNKNOWN_WORKER)
        runtime_id = (await client.get_runtime()).runtime_id
        assert sp.terminate() == 0
    lines = sp.stderr().splitlines()
    assert len(lines) > len(runs) * 3  # DEBUG: httpx, httpcore, access lines, diagnostics
    records = []
    for line in lines:
        record = json.loads(line)  # every line is one JSON object
        assert isinstance(record, dict)
        assert record["runtime_id"] == runtime_id, line
        for key in ("time", "level", "logger", "message"):
            assert record[key], (key, line)
        found = leaks(line)
        assert not found, f"{found[:2]} in {line[:300]!r}"
        records.append(record)
    assert {r["logger"] for r in records} >= {"runtime_server.access", "httpx"}
    # the run's own lines name it (a provider failure, logged from inside the run's task)
    assert any(r.get("run_id") and r["logger"].startswith("httpx") for r in records)

    access = [r for r in records if r["logger"] == "runtime_server.access"]
    by_rpc: dict[str, list[dict[str, object]]] = {}
    for r in access:
        by_rpc.setdefault(str(r["rpc"]).rsplit("/", 1)[-1], []).append(r)
    # one line per RPC
    assert len(by_rpc["SendInput"]) == len(runs)
    assert len(by_rpc["CreateWorker"]) == len(runs)
    send = by_rpc["SendInput"][0]
    assert send["level"] == "INFO"
    assert send["grpc_code"] == "OK"
    assert isinstance(send["duration_ms"], float)
    assert send["worker_id"] == runs[0].worker_id
    assert send["run_id"] == runs[0].run_id
    assert by_rpc["CreateWorker"][0]["worker_id"] == runs[0].worker_id
    (missing,) = by_rpc["GetWorker"]
    assert missing["level"] == "WARNING"
    assert missing["grpc_code"] == "NOT_FOUND"
    assert missing["reason"] == "WORKER_NOT_FOUND"
    assert missing["worker_id"] == UNKNOWN_WORKER


async def test_text_format_stays_the_default_and_the_access_log_can_be_off(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    sp = await serve_process(None, store="memory", extra=["--log-level", "INFO"])
    quiet = await serve_process(
        None, store="memory", extra=["--log-level", "INFO", "--access-log", "off"]
    )
    for process in (sp, quiet):
        with pytest.raises(WorkerNotFound):
            await process.client().get_worker(UNKNOWN_WORKER)
        assert process.terminate() == 0
    line = next(x for x in sp.stderr().splitlines() if "GetWorker" in x)
    assert " WARNING runtime_server.access: " in line
    assert "NOT_FOUND" in line
    assert "reason=WORKER_NOT_FOUND" in line
    assert "GetWorker" not in quiet.stderr()
