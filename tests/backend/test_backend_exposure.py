"""An unauthenticated console is never exposed by accident: ``worker-backend serve`` refuses a
non-loopback address without a login token (it would let anyone who connects drive the agents
and their tools) and names the fix; loopback stays token-free; the operator can opt in with
``allow_unauthenticated`` (config) / ``--allow-unauthenticated`` (flag). A remote runtime's TLS
file that cannot be read stops ``serve`` before it binds, naming the key.

The subprocess tests never bind a network address: each ends at a check that runs before the port
is bound (the exposure check, then the TLS files)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from serving import PYTHON, REPO_ROOT, env

from backend.config import exposure_error, parse_config

BOUND = 60.0  # a safety net on a shared machine


def _serve(tmp_path: Path, *args: str, config: str = "", **extra_env: str) -> tuple[int, str]:
    argv = [str(PYTHON), "-m", "backend.cli", "serve", "--data-dir", str(tmp_path / "data")]
    if config:
        (tmp_path / "backend.toml").write_text(config, encoding="utf-8")
        argv += ["--config", str(tmp_path / "backend.toml")]
    proc = subprocess.run(
        [*argv, *args],
        cwd=REPO_ROOT,
        env={**env(), **extra_env},
        capture_output=True,
        timeout=BOUND,
        check=False,
    )
    assert b"serving on" not in proc.stdout
    return proc.returncode, proc.stderr.decode(errors="replace")


def test_an_open_console_on_a_network_address_is_refused_with_the_fix_named(
    tmp_path: Path,
) -> None:
    for listen in ("0.0.0.0:0", "[::]:0"):
        code, err = _serve(tmp_path, "--listen", listen)
        assert code == 2, err
        assert f"listen: {listen} is not a loopback address" in err
        assert "token_env" in err
        assert "allow_unauthenticated" in err
        assert "Traceback" not in err
    assert not (tmp_path / "data").exists()  # refused before anything started


MISSING_CA = """\
[[runtimes]]
target = "127.0.0.1:50051"
ca_file = "no-such-ca.pem"
"""


@pytest.mark.parametrize(
    ("args", "config", "token"),
    [
        (("--allow-unauthenticated",), MISSING_CA, ""),  # the flag
        ((), "allow_unauthenticated = true\n" + MISSING_CA, ""),  # the config key
        ((), 'token_env = "TEST_CONSOLE_TOKEN"\n' + MISSING_CA, "console-t0k"),  # a token
    ],
)
def test_a_token_or_the_explicit_opt_in_passes_the_exposure_check(
    tmp_path: Path, args: tuple[str, ...], config: str, token: str
) -> None:
    """Each gets past the exposure check to the next one — the TLS file, missing on purpose so
    the test never binds 0.0.0.0 — which names its key and the resolved path."""
    code, err = _serve(
        tmp_path, "--listen", "0.0.0.0:0", *args, config=config, TEST_CONSOLE_TOKEN=token
    )
    assert code == 2, err
    assert "not a loopback address" not in err
    assert "runtimes[0].ca_file" in err
    assert str(tmp_path / "no-such-ca.pem") in err  # relative to the config file's folder
    assert "Traceback" not in err
    if token:
        assert token not in err


@pytest.mark.parametrize(
    "listen",
    ["127.0.0.1:8080", "127.8.9.10:8080", "[::1]:8080", "localhost:8080", "LOCALHOST:1"],
)
def test_loopback_needs_no_token(listen: str) -> None:
    assert exposure_error(parse_config({"listen": listen}, env={})) is None


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:8080", "192.168.1.2:80"])
def test_any_other_address_needs_a_token_or_the_opt_in(listen: str) -> None:
    assert exposure_error(parse_config({"listen": listen}, env={})) is not None
    with_token = parse_config({"listen": listen, "token_env": "T"}, env={"T": "secret"})
    assert exposure_error(with_token) is None
    opted_in = parse_config({"listen": listen, "allow_unauthenticated": True}, env={})
    assert exposure_error(opted_in) is None


def test_allow_unauthenticated_must_be_a_boolean() -> None:
    with pytest.raises(ValueError, match="allow_unauthenticated: must be a bool"):
        parse_config({"allow_unauthenticated": "yes"}, env={})
