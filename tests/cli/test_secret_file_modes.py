"""``serve`` refuses a bearer-token file or a TLS private key that every user of the host may
read: before, it read them silently, so any local user could take the token or the key.
Owner- and group-readable files are fine (Kubernetes mounts a Secret 0440 with the pod's
fsGroup, as deploy/kubernetes does). The message names the path and its mode, never the secret.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serving import ServerProcess, SpawnServer, run_serve, serve_argv
from tlsfiles import OPENSSL, make_certs

from runtime_server.cli import check_secret_mode

TOKEN = "tok-secret-mode-5e1a0c7b"


def _token_file(tmp_path: Path, mode: int) -> Path:
    path = tmp_path / "runtime.token"
    path.write_text(TOKEN + "\n", encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o666])
def test_a_token_file_others_can_read_is_refused(tmp_path: Path, mode: int) -> None:
    path = _token_file(tmp_path, mode)
    done = run_serve([*serve_argv(None, store="memory"), "--auth-token-file", str(path)])
    assert done.returncode == 2, done
    assert f"--auth-token-file: {path}" in done.stderr
    assert f"mode {mode:04o}" in done.stderr
    assert "chmod 600" in done.stderr
    assert TOKEN not in done.stderr + done.stdout


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o440, 0o400])
async def test_owner_and_group_readable_token_files_serve(
    tmp_path: Path, mode: int, spawn_server: SpawnServer
) -> None:
    path = _token_file(tmp_path, mode)
    server: ServerProcess = await spawn_server("--auth-token-file", str(path))
    assert server.target  # it started


def test_a_kubernetes_style_symlink_is_judged_by_its_target(tmp_path: Path) -> None:
    # Kubernetes mounts each Secret key as a symlink (0777) into a ..data directory
    target = _token_file(tmp_path, 0o440)
    link = tmp_path / "token"
    os.symlink(target, link)
    check_secret_mode("--auth-token-file", link)  # no error: the file itself is 0440


@pytest.mark.skipif(OPENSSL is None, reason="needs the openssl command")
def test_a_tls_key_others_can_read_is_refused(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)
    certs.server_key.chmod(0o644)
    argv = [*serve_argv(None, store="memory"), "--tls-cert", str(certs.server_cert)]
    done = run_serve([*argv, "--tls-key", str(certs.server_key), "--allow-unauthenticated"])
    assert done.returncode == 2, done
    assert f"--tls-key: {certs.server_key}" in done.stderr
    assert "mode 0644" in done.stderr
    assert "PRIVATE KEY" not in done.stderr
