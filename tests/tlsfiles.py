"""Throwaway PEM files for TLS tests, made with the ``openssl`` command line tool: a CA, a server
certificate for 127.0.0.1/localhost and a client certificate (both signed by the CA), an
unrelated key (a key that matches neither certificate) and a passphrase-protected copy of the
server key."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

OPENSSL = shutil.which("openssl")


@dataclass(frozen=True)
class Certs:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_key: Path
    encrypted_key: Path  # the server key, passphrase-protected


def _openssl(*args: str, cwd: Path) -> None:
    assert OPENSSL is not None
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _key(name: str, cwd: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", name, cwd=cwd)


def make_certs(directory: Path) -> Certs:
    """Generate the files in ``directory``; skips the test without openssl (fails under CI)."""
    if OPENSSL is None:
        if os.environ.get("CI") == "true":
            pytest.fail("openssl is required for the TLS tests")
        pytest.skip("openssl is not installed")
    d = directory
    d.mkdir(parents=True, exist_ok=True)
    for name in ("ca.key", "server.key", "client.key", "other.key"):
        _key(name, d)
    _openssl("req", "-x509", "-new", "-key", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=worker-runtime test CA", cwd=d)  # fmt: skip
    exts = {
        "server": "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        "client": "extendedKeyUsage=clientAuth\n",
    }
    for who, ext in exts.items():
        (d / f"{who}.ext").write_text("basicConstraints=CA:FALSE\n" + ext)
        cn = "localhost" if who == "server" else "test-client"
        _openssl("req", "-new", "-key", f"{who}.key", "-out", f"{who}.csr", "-subj", f"/CN={cn}",
                 cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{who}.pem", "-days", "2",
                 "-extfile", f"{who}.ext", cwd=d)  # fmt: skip
    _openssl("ec", "-in", "server.key", "-aes256", "-passout", "pass:secret",
             "-out", "encrypted.key", cwd=d)  # fmt: skip
    return Certs(
        ca=d / "ca.pem",
        server_cert=d / "server.pem",
        server_key=d / "server.key",
        client_cert=d / "client.pem",
        client_key=d / "client.key",
        other_key=d / "other.key",
        encrypted_key=d / "encrypted.key",
    )
