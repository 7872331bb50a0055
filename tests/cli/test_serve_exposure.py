"""An API reachable from the network must authenticate its callers.

``serve --listen 0.0.0.0:…`` used to start without a token and without client certificates, and the
shipped Containerfile did exactly that: anyone who could reach the port could create workers, send
them input and read every transcript. Now a non-loopback ``--listen`` needs a bearer token or
client certificates, or the operator's explicit ``--allow-unauthenticated``; the refusal is one
line and exit code 2, before any port is opened. Loopback stays token-free, as in development.
(Tests bind only loopback: the accepted non-loopback cases are checked through the same function
``serve`` calls, the refusals through a real ``serve`` process that exits before binding.)
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from serving import Finished, run_serve, serve_argv

from runtime_client import RuntimeClient
from runtime_server.cli import StartupError, check_exposure, is_loopback

BOUND = 30.0


def memory_serve(*args: str) -> list[str]:
    return [*serve_argv(None, store="memory"), *args]  # a later --listen replaces 127.0.0.1:0


@pytest.mark.parametrize("listen", ["0.0.0.0:0", "[::]:0"])
async def test_a_network_address_without_authentication_is_refused(listen: str) -> None:
    done: Finished = await asyncio.to_thread(
        run_serve, memory_serve("--listen", listen), timeout=60
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    err = done.stderr.strip()
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert "serving on" not in done.stdout
    for needle in ("--listen", listen, "--auth-token-env", "--tls-client-ca"):
        assert needle in err, err
    assert "--allow-unauthenticated" in err


async def test_loopback_by_name_needs_no_token(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        *memory_serve("--listen", "localhost:0"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), BOUND)).decode()
        assert line.startswith("worker-runtime serving on localhost:"), line
        port = int(line.split(":")[-1])
        async with RuntimeClient(f"127.0.0.1:{port}") as client:
            assert (await client.get_runtime()).state == "SERVING"
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), BOUND)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.10", True),
        ("[::1]", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("[::]", False),
        ("10.1.2.3", False),
        ("no-such-host.invalid", False),
    ],
)
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_a_token_client_certificates_or_the_opt_in_allow_a_network_address() -> None:
    for how in (
        {"authenticated": True, "allow_unauthenticated": False},
        {"authenticated": False, "allow_unauthenticated": True},
    ):
        check_exposure("0.0.0.0:50051", **how)  # no error
    with pytest.raises(StartupError):
        check_exposure("0.0.0.0:50051", authenticated=False, allow_unauthenticated=False)


def test_serve_counts_a_token_and_a_client_ca_as_authentication(tmp_path: Path) -> None:
    # The refusal comes before the token and TLS files are needed for anything else, so an
    # unset token variable is reported as such (not as exposure), and the opt-in flag parses.
    env_var = "EXPOSURE_TEST_TOKEN_UNSET"
    assert env_var not in os.environ
    done = run_serve(memory_serve("--listen", "0.0.0.0:0", "--auth-token-env", env_var))
    assert done.returncode == 2
    assert f"${env_var} is empty or unset" in done.stderr
    assert "reachable from the network" not in done.stderr
