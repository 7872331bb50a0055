"""A bearer token is used as the operator meant it, or refused at once with a clear line.

A token read from ``--auth-token-env`` kept a trailing newline (a Kubernetes Secret made from a
file has one) while ``--auth-token-file`` stripped it: the server then expected a value no client
can send in gRPC metadata, and every call was UNAUTHENTICATED. A client given such a token (the
same Secret) failed every call with a grpc traceback. Now both sides strip surrounding
whitespace, and a token no client can send (a space, a control or a non-ASCII character inside)
is refused — by ``serve`` at start (exit 2), by ``RuntimeClient`` as a ValueError naming
``token`` (the CLI: a usage error, exit 2) — never showing the token. Real ``serve`` and CLI
processes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import TYPE_CHECKING

from serving import REPO_ROOT, env

if TYPE_CHECKING:
    from serving import SpawnServer

BOUND = 30.0
TOKEN = "tok-7f3a9c21e5b84d06"


async def cli(target: str, token: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtime_server.cli", "--target", target, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT, env={**env(), "WORKER_RUNTIME_TOKEN": token},
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_a_token_with_a_trailing_newline_works_on_both_sides(
    spawn_server: SpawnServer,
) -> None:
    server = await spawn_server("--auth-token-env", "TEST_TOK", env={"TEST_TOK": TOKEN + "\n"})
    for sent in (TOKEN + "\n", TOKEN, f"  {TOKEN}\r\n"):
        rc, out, err = await cli(server.target, sent, "runtime")
        assert rc == 0, err
        assert "runtime_id" in out
    rc, _, err = await cli(server.target, TOKEN + "x", "runtime")
    assert rc == 1
    assert "UNAUTHENTICATED" in err


async def test_a_token_no_client_can_send_is_refused_without_showing_it(
    spawn_server: SpawnServer,
) -> None:
    for bad in ("tok en-secret-1", "tok\u00e9n-secret-2", "tok\x01en-secret-3"):
        argv = [sys.executable, "-m", "runtime_server.cli", "serve", "--store", "memory"]
        argv += ["--listen", "127.0.0.1:0", "--auth-token-env", "TEST_TOK"]
        done = await asyncio.to_thread(
            subprocess.run, argv, capture_output=True, text=True, cwd=REPO_ROOT,
            env={**env(), "TEST_TOK": bad}, timeout=BOUND,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert "$TEST_TOK" in done.stderr
        assert "secret" not in done.stderr

    server = await spawn_server("--auth-token-env", "TEST_TOK", env={"TEST_TOK": TOKEN})
    rc, _, err = await cli(server.target, "tok\u00e9n-secret-4", "runtime")
    assert rc == 2, err
    assert err.startswith("error: token: ")
    assert "secret" not in err
    assert "Traceback" not in err
