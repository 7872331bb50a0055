"""uvicorn's own log lines go through the Backend's formatter and redaction (backend.logsetup),
in both formats, against a real ``worker-backend serve``.

uvicorn configured its loggers (``uvicorn``, ``uvicorn.error``, ``uvicorn.access``) with
handlers of its own, outside the Backend's: a request whose path decodes to control characters
wrote them raw to the log (a forged line, terminal escapes), ``--log-format json`` did not apply
to those lines, and a token in a request's URL was written as it came. Here one request carries
an escape sequence and a newline (percent-encoded; uvicorn quotes the path again in its access
line), the console's login token in its path (and in its Authorization header, which no line
shows), and another secret in a credential-named query parameter.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from backend_serving import BackendProcess, start_backend

BOUND = 30.0
TOKEN = "console-login-tok-5e2b9d41c7"
OTHER = "query-secret-8f3a61c0d2e9"
CONFIG = 'token_env = "CONSOLE_TOKEN"\nstore = "memory"\n[companion]\nprofile = "echo"\n'
TARGET = f"/api/%1b[31mred%0aFORGED%20LINE/{TOKEN}?access_token={OTHER}&page=2"


async def _request(backend: BackendProcess, target: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", backend.port)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        return await asyncio.wait_for(reader.read(), BOUND)
    finally:
        writer.close()


@pytest.mark.parametrize("fmt", ["text", "json"])
async def test_uvicorn_lines_are_escaped_and_redacted(tmp_path: Path, fmt: str) -> None:
    backend = await start_backend(
        tmp_path,
        CONFIG,
        {"CONSOLE_TOKEN": TOKEN},
        ["--log-level", "info", "--log-format", fmt],
    )
    try:
        answer = await _request(backend, TARGET)
        assert answer.startswith(b"HTTP/1.1 "), answer
        await _request(backend, "/healthz")
    finally:
        backend.terminate()
    err = backend.stderr_path.read_bytes().decode("utf-8", errors="replace")
    assert TOKEN not in err
    assert OTHER not in err
    assert "\x1b" not in err  # no raw escape sequence reaches the terminal
    lines = err.splitlines()
    assert not [ln for ln in lines if ln.startswith("FORGED")], err
    if fmt == "json":
        records = [json.loads(ln) for ln in lines if ln.strip()]  # every line is one object
        access = [r for r in records if r["logger"] == "uvicorn.access"]
        assert any("/healthz" in r["message"] for r in access), records
        [line] = [r["message"] for r in access if "FORGED" in r["message"]]
        assert "%1B%5B31mred%0AFORGED%20LINE" in line  # the path as uvicorn quotes it
        assert "access_token=[redacted]" in line
        assert "[redacted]" in line.split("?")[0]  # the token in the path
        assert any(r["logger"].startswith("uvicorn") and r["level"] == "INFO" for r in records)
        assert all("runtime_id" in r for r in records)
    else:
        access = [ln for ln in lines if " uvicorn.access: " in ln]
        assert any("/healthz" in ln for ln in access), err
        [line] = [ln for ln in access if "FORGED" in ln]
        assert "%1B%5B31mred%0AFORGED%20LINE" in line  # quoted, on the request's own line
        assert "access_token=[redacted]" in line
        assert "/[redacted]?" in line
        assert any(" uvicorn.error: " in ln for ln in lines), err  # "Started server process"
