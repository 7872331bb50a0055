"""The Backend refuses a client TLS key (``[[runtimes]] key_file``, its identity for mutual TLS
to a remote runtime) that every user of the host may read — ``worker-runtime serve``'s rule for
its own token and key files, applied by the same check. Before, the Backend read such a key
silently: any local user could take the Backend's client certificate identity.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from serving import PYTHON, REPO_ROOT, env
from tlsfiles import make_certs

from backend.config import BackendConfigError, parse_config
from backend.service import build_registry

BOUND = 60.0


def _config(certs_dir: Path) -> str:
    return (
        '[companion]\nprofile = "echo"\n[[runtimes]]\ntarget = "127.0.0.1:1"\nalias = "lab"\n'
        f'ca_file = "{certs_dir}/ca.pem"\ncert_file = "{certs_dir}/client.pem"\n'
        f'key_file = "{certs_dir}/client.key"\n'
    )


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o666])
def test_a_client_key_every_user_can_read_is_refused_at_start(tmp_path: Path, mode: int) -> None:
    certs = make_certs(tmp_path / "tls")
    certs.client_key.chmod(mode)
    (tmp_path / "backend.toml").write_text(_config(tmp_path / "tls"), encoding="utf-8")
    argv = [str(PYTHON), "-m", "backend.cli", "serve", "--listen", "127.0.0.1:0"]
    argv += ["--config", str(tmp_path / "backend.toml"), "--data-dir", str(tmp_path / "data")]
    done = subprocess.run(
        argv, cwd=REPO_ROOT, env=env(), capture_output=True, timeout=BOUND, check=False
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2, stderr
    assert b"serving on" not in done.stdout
    assert f"runtimes[0].key_file: {certs.client_key}" in stderr
    assert f"mode {mode:04o}" in stderr
    assert "chmod 600" in stderr
    assert certs.client_key.read_text().splitlines()[1] not in stderr  # never the key itself


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o440, 0o400])
def test_owner_and_group_readable_client_keys_are_used(tmp_path: Path, mode: int) -> None:
    certs = make_certs(tmp_path / "tls")
    certs.client_key.chmod(mode)
    config = parse_config(
        {
            "runtimes": [
                {
                    "target": "127.0.0.1:1",
                    "ca_file": str(certs.ca),
                    "cert_file": str(certs.client_cert),
                    "key_file": str(certs.client_key),
                }
            ]
        }
    )
    build_registry(config)  # no error
    certs.client_key.chmod(0o604)
    with pytest.raises(BackendConfigError, match=r"runtimes\[0\]\.key_file: .*\(mode 0604\)"):
        build_registry(config)
