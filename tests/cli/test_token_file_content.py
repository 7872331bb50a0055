"""``serve --auth-token-file`` with a file that cannot be a token stops start-up with one line and
exit code 2, like every other mistake in a flag or a file. Before, a file that was not UTF-8
stopped it with a traceback (exit 1), and a huge file given by mistake was read whole."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving import run_serve, serve_argv

SECRET = b"\xff\xfe-tok-not-utf8-5a1c"


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (SECRET, "is not UTF-8 text"),
        (b"t" * (64 * 1024 + 1), "is larger than 65536 bytes"),
    ],
    ids=["not utf-8", "huge"],
)
def test_a_file_that_cannot_be_a_token_is_one_line_and_exit_2(
    tmp_path: Path, content: bytes, why: str
) -> None:
    path = tmp_path / "runtime.token"
    path.write_bytes(content)
    path.chmod(0o600)
    done = run_serve([*serve_argv(None, store="memory"), "--auth-token-file", str(path)])
    assert done.returncode == 2, done
    assert done.stderr.strip() == f"error: --auth-token-file: {path} {why}" + (
        " (the token is not shown)" if why.startswith("is not") else ": not a token file"
    ), done.stderr
    assert "Traceback" not in done.stderr
    assert "not-utf8-5a1c" not in done.stderr + done.stdout
