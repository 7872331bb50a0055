"""The operator's start-up path (issue 8, items 2, 3, 4 and 8): a taken port, incomplete or
mismatched TLS files, nonsense flags — each is one clear line and exit code 2, never a traceback,
a grpc abort or a server quietly running in another mode; and the Python client and the CLI
reach real TLS and mutual-TLS servers with PEM file arguments alone (no grpc import)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from serving import assert_one_line_usage_error, env, run_serve, serve_argv
from tlsfiles import Certs, make_certs

from runtime_client import RuntimeClient, Unavailable

if TYPE_CHECKING:
    from serving import SpawnServer

BOUND = 30.0
CLI = [sys.executable, "-m", "runtime_server.cli"]


@pytest.fixture
def certs(tmp_path: Path) -> Certs:
    return make_certs(tmp_path / "pki")


def memory_serve(*args: str) -> list[str]:
    argv = serve_argv(None, store="memory")
    return [*argv, *args]  # later flags win: --listen given here replaces 127.0.0.1:0


# --- item 2: one port, one runtime ------------------------------------------------------------


async def test_serve_refuses_a_port_another_server_holds(spawn_server: SpawnServer) -> None:
    first = await spawn_server()
    done = await asyncio.to_thread(run_serve, memory_serve("--listen", first.target), timeout=60)
    assert_one_line_usage_error(done, "--listen", first.target, "another server holds the port")
    async with RuntimeClient(first.target) as client:  # the first one is untouched
        assert (await client.get_runtime()).state == "SERVING"


# --- item 3: no TLS option without the complete server pair -----------------------------------


@pytest.mark.parametrize(
    "flags",
    [("--tls-client-ca",), ("--tls-cert",), ("--tls-key",), ("--tls-cert", "--tls-client-ca")],
    ids=["client-ca-only", "cert-only", "key-only", "cert-and-ca"],
)
def test_any_tls_option_without_cert_and_key_is_a_startup_error(
    certs: Certs, flags: tuple[str, ...]
) -> None:
    files = {
        "--tls-cert": certs.server_cert,
        "--tls-key": certs.server_key,
        "--tls-client-ca": certs.ca,
    }
    args = [a for f in flags for a in (f, str(files[f]))]
    done = run_serve(memory_serve(*args))
    assert_one_line_usage_error(done, "--tls-cert", "--tls-key")


async def test_mtls_server_says_so_and_the_client_needs_a_certificate(
    spawn_server: SpawnServer, certs: Certs
) -> None:
    server = await spawn_server(
        "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key),
        "--tls-client-ca", str(certs.ca),
    )  # fmt: skip
    assert "mTLS (client certificates required)" in server.stdout()
    async with RuntimeClient(
        server.target, ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key
    ) as client:
        assert (await client.get_runtime()).state == "SERVING"
        worker = (await client.create_worker()).worker
    async with RuntimeClient(server.target, ca_file=str(certs.ca), timeout=10) as anonymous:
        with pytest.raises(Unavailable):  # the handshake fails without a client certificate
            await anonymous.get_runtime()
    # the CLI with the same files
    proc = await asyncio.create_subprocess_exec(
        *CLI, "--target", server.target, "--ca-file", str(certs.ca),
        "--cert-file", str(certs.client_cert), "--key-file", str(certs.client_key),
        "workers", "get", worker.worker_id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env(),
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode == 0, err
    assert worker.worker_id in out.decode()


async def test_tls_server_and_the_client_with_a_ca_file(
    spawn_server: SpawnServer, certs: Certs
) -> None:
    server = await spawn_server(
        "--tls-cert", str(certs.server_cert), "--tls-key", str(certs.server_key)
    )
    banner = server.stdout()
    assert "tls on" in banner
    assert "mTLS" not in banner
    async with RuntimeClient(server.target, ca_file=certs.ca) as client:
        assert (await client.get_runtime()).state == "SERVING"
    # tls=True alone trusts the system roots, which did not sign this server
    async with RuntimeClient(server.target, tls=True, timeout=10) as system_roots:
        with pytest.raises(Unavailable):
            await system_roots.get_runtime()
    async with RuntimeClient(server.target, timeout=10) as plaintext:
        with pytest.raises(Unavailable):
            await plaintext.get_runtime()


async def test_client_tls_arguments_are_checked_without_grpc(certs: Certs) -> None:
    with pytest.raises(ValueError, match="cert_file without key_file"):
        RuntimeClient("127.0.0.1:1", cert_file=certs.client_cert)
    with pytest.raises(ValueError, match="key_file without cert_file"):
        RuntimeClient("127.0.0.1:1", key_file=certs.client_key)
    with pytest.raises(ValueError, match="does not match"):
        RuntimeClient("127.0.0.1:1", cert_file=certs.client_cert, key_file=certs.other_key)
    with pytest.raises(ValueError, match=r"ca_file: .*No such file"):
        RuntimeClient("127.0.0.1:1", ca_file=certs.ca.parent / "missing.pem")
    with pytest.raises(ValueError, match="not a PEM file"):
        RuntimeClient("127.0.0.1:1", ca_file=certs.ca.parent / "server.ext")


# --- item 4: every bad flag or file is one line and exit code 2 -------------------------------


def test_serve_with_a_key_that_does_not_match_the_certificate(certs: Certs) -> None:
    done = run_serve(
        memory_serve("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.other_key))
    )
    assert_one_line_usage_error(done, "does not match")


def test_serve_with_a_passphrase_protected_key(certs: Certs) -> None:
    done = run_serve(
        memory_serve("--tls-cert", str(certs.server_cert), "--tls-key", str(certs.encrypted_key))
    )  # stdin is not a terminal here; on one, a prompt would have hung start-up
    assert_one_line_usage_error(done, "passphrase")


def test_serve_with_an_unreadable_tls_file(certs: Certs, tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    done = run_serve(memory_serve("--tls-cert", str(missing), "--tls-key", str(certs.server_key)))
    assert_one_line_usage_error(done, "--tls-cert", str(missing))


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--listen", "nonsense"), "--listen"),
        (("--listen", "127.0.0.1:99999"), "--listen"),
        (("--listen", "192.0.2.1:50051"), "--listen"),  # TEST-NET: not an address of this host
        (("--log-level", "bogus"), "--log-level"),
        (("--auth-token-env", "WR_SURELY_UNSET_VAR"), "--auth-token-env"),
    ],
    ids=["listen-nonsense", "listen-port-range", "listen-foreign", "log-level", "token-env-unset"],
)
def test_serve_bad_flags(args: tuple[str, ...], needle: str) -> None:
    assert_one_line_usage_error(run_serve(memory_serve(*args)), needle)


@pytest.mark.parametrize(
    ("flags", "needle"),
    [
        (("--cert-file", "CLIENT_CERT"), "--cert-file without --key-file"),
        (("--key-file", "CLIENT_KEY"), "--key-file without --cert-file"),
        (("--cert-file", "CLIENT_CERT", "--key-file", "OTHER_KEY"), "does not match"),
        (("--ca-file", "MISSING"), "--ca-file"),
        (("--cert-file", "SERVER_CERT", "--key-file", "ENCRYPTED_KEY"), "passphrase"),
    ],
    ids=["cert-without-key", "key-without-cert", "mismatch", "missing-ca", "encrypted-key"],
)
def test_cli_bad_tls_files(certs: Certs, flags: tuple[str, ...], needle: str) -> None:
    paths = {
        "CLIENT_CERT": certs.client_cert,
        "CLIENT_KEY": certs.client_key,
        "OTHER_KEY": certs.other_key,
        "MISSING": certs.ca.parent / "missing.pem",
        "SERVER_CERT": certs.server_cert,
        "ENCRYPTED_KEY": certs.encrypted_key,
    }
    argv = [*CLI, "--target", "127.0.0.1:1", *(str(paths.get(f, f)) for f in flags), "runtime"]
    done = run_serve(argv)  # any worker-runtime command that should exit by itself
    assert_one_line_usage_error(done, needle)
