"""A mistake in what ``worker-backend serve`` is given is one ``error:`` line naming it, exit 2.

Before, each of these ended in a Python traceback and exit 1, unlike the config file's own
mistakes (``error: <file>: <key>: ...``, exit 2): a ``--listen`` port past 65535 (an
``OverflowError`` from ``bind``), a ``--listen`` with no port (refused as "not a loopback
address ... no login token", which is not what is wrong), a ``runtime_config`` that is missing,
not TOML or names an unknown provider or limit (``ConfigError``/``ValueError`` from the embedded
runtime's start), and a ``[companion]`` the embedded runtime refuses (``ProfileNotFound``,
``InvalidArgument`` from creating the Companion). Real ``worker-backend serve`` processes; none
gets as far as serving.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from serving import PYTHON, REPO_ROOT, START_TIMEOUT, env


def _serve(tmp_path: Path, *args: str, config: str = "") -> tuple[int, str]:
    argv = [str(PYTHON), "-m", "backend.cli", "serve", "--data-dir", str(tmp_path / "data")]
    if config:
        (tmp_path / "backend.toml").write_text(config, encoding="utf-8")
        argv += ["--config", str(tmp_path / "backend.toml")]
    if "--listen" not in args:
        argv += ["--listen", "127.0.0.1:0"]
    proc = subprocess.run(
        [*argv, *args],
        cwd=REPO_ROOT,
        env=env(),
        capture_output=True,
        timeout=START_TIMEOUT * 2,
        check=False,
    )
    assert b"serving on" not in proc.stdout
    return proc.returncode, proc.stderr.decode(errors="replace")


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: "), stderr
    return lines[0]


@pytest.mark.parametrize(
    ("listen", "expected"),
    [
        ("127.0.0.1:99999", "--listen: must be HOST:PORT"),
        ("nohost", "--listen: must be HOST:PORT"),
        ("127.0.0.1:", "--listen: must be HOST:PORT"),
        (":8080", "--listen: must be HOST:PORT"),
    ],
)
def test_a_bad_listen_flag_is_named(tmp_path: Path, listen: str, expected: str) -> None:
    code, stderr = _serve(tmp_path, "--listen", listen)
    assert code == 2, stderr
    assert expected in _one_error_line(stderr)


@pytest.mark.parametrize(
    ("runtime_toml", "expected"),
    [
        (None, "runtime_config: "),  # the file does not exist
        ("x = [\n", "not valid TOML"),
        ('[profiles.p]\nprovider = "nope"\n', "profiles.p.provider: no provider named 'nope'"),
        ("[limits]\nmax_bogus = 1\n", "limits.max_bogus: unknown limit"),
    ],
)
def test_a_bad_runtime_config_is_named(
    tmp_path: Path, runtime_toml: str | None, expected: str
) -> None:
    if runtime_toml is not None:
        (tmp_path / "serve.toml").write_text(runtime_toml, encoding="utf-8")
    code, stderr = _serve(tmp_path, config='runtime_config = "serve.toml"\n')
    assert code == 2, stderr
    line = _one_error_line(stderr)
    assert line.startswith("error: runtime_config: "), line
    assert expected in line
    assert "serve.toml" in line


@pytest.mark.parametrize(
    ("companion", "expected"),
    [
        ('profile = "nope"', "companion.profile: no profile 'nope' on the embedded runtime"),
        (f'display_name = "{"x" * 300}"', "companion.display_name: "),
    ],
)
def test_a_companion_the_embedded_runtime_refuses_is_named(
    tmp_path: Path, companion: str, expected: str
) -> None:
    code, stderr = _serve(tmp_path, config=f"[companion]\n{companion}\n")
    assert code == 2, stderr
    assert expected in _one_error_line(stderr)
