"""Every code block of README.md is executed, or explicitly excluded, so the README cannot drift
from the product (issue 8, item 10).

The rules the README is written to:

- ```` ```python ```` blocks run as files, in a fresh interpreter from the virtualenv;
- ```` ```sh ```` blocks run in ``bash -e -o pipefail`` (a failing command fails the test), in a
  temporary directory that holds links to the repository's ``.venv`` and ``config``;
- ```` ```toml ```` blocks are parsed by the server's own config parser;
- ```` ```text ```` blocks are not commands (synopses, layouts);
- a block right after ``<!-- not-executed: REASON -->`` is not run (a long-running server,
  tools ``make`` does not install);
- a block right after ``<!-- run-against: auth-server ... -->`` runs against a server started with
  ``--auth-token-env WORKER_RUNTIME_TOKEN``, the token in that variable.

Python and sh blocks run against a real ``worker-runtime serve --config config/serve.toml``
(memory store): the default address ``127.0.0.1:50051`` in a block is replaced by that server's,
and ``WORKER_RUNTIME_TARGET`` points there. Any other block fails :func:`test_every_block_is_
executed_or_excluded`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

import pytest
from serving import REPO_ROOT, ServeProcessFactory, env

from runtime_server.runtime import parse_config

README = REPO_ROOT / "README.md"
DEFAULT_TARGET = "127.0.0.1:50051"
EXECUTED = ("python", "sh", "toml")
BOUND = 180.0  # a safety net for one block on a loaded machine, not a speed assertion
MARKER = re.compile(r"^<!--\s*(not-executed|run-against):\s*(.+?)\s*-->$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str  # "", "not-executed" or "run-against"
    reason: str

    @property
    def id(self) -> str:
        return f"README.md:{self.line}:{self.lang or 'plain'}"


def blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    out: list[Block] = []
    i = 0
    while i < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[i])
        if not fence:
            i += 1
            continue
        start, lang = i, fence[1]
        j = i + 1
        while j < len(lines) and lines[j] != "```":
            j += 1
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        mark = MARKER.match(lines[k].strip()) if k >= 0 else None
        out.append(
            Block(
                line=start + 1,
                lang=lang,
                code="\n".join(lines[start + 1 : j]) + "\n",
                marker=mark[1] if mark else "",
                reason=mark[2] if mark else "",
            )
        )
        i = j + 1
    return out


ALL = blocks()
RUN = [b for b in ALL if b.lang in EXECUTED and b.marker != "not-executed"]


def test_every_block_is_executed_or_excluded() -> None:
    stray = [b.id for b in ALL if b.marker != "not-executed" and b.lang not in (*EXECUTED, "text")]
    assert not stray, f"blocks neither executed nor marked <!-- not-executed: why -->: {stray}"
    assert all(b.reason for b in ALL if b.marker == "not-executed")
    langs = {b.lang for b in RUN}
    assert langs == set(EXECUTED), f"the README should show every kind of snippet: {langs}"
    assert any(b.marker == "run-against" for b in RUN), "the auth example is executed"


@pytest.mark.parametrize("block", [b for b in RUN if b.lang == "toml"], ids=lambda b: b.id)
def test_toml_blocks_are_valid_config(block: Block) -> None:
    parse_config(tomllib.loads(block.code), source=block.id)


@pytest.mark.parametrize(
    "block", [b for b in RUN if b.lang in ("python", "sh")], ids=lambda b: b.id
)
async def test_snippet_runs_against_a_real_server(
    block: Block,
    serve_process: ServeProcessFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    extra: list[str] = []
    if block.marker == "run-against":
        assert block.reason.startswith("auth-server"), block.reason
        monkeypatch.setenv("WORKER_RUNTIME_TOKEN", secrets.token_hex(16))
        extra = ["--auth-token-env", "WORKER_RUNTIME_TOKEN"]
    server = await serve_process(
        None, store="memory", config=REPO_ROOT / "config" / "serve.toml", extra=extra
    )
    code = block.code.replace(DEFAULT_TARGET, server.target)
    work = tmp_path / "work"
    work.mkdir()
    (work / "config").symlink_to(REPO_ROOT / "config")  # what the README's paths expect
    if (REPO_ROOT / ".venv").is_dir():
        (work / ".venv").symlink_to(REPO_ROOT / ".venv")
    else:  # the package installed into the running interpreter: its bin/ stands in
        (work / ".venv").mkdir()
        (work / ".venv" / "bin").symlink_to(Path(sys.executable).parent)
    if block.lang == "python":
        script = work / "snippet.py"
        script.write_text(code, encoding="utf-8")
        argv = [sys.executable, str(script)]
    else:
        argv = ["bash", "-e", "-o", "pipefail", "-c", code]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        cwd=work,
        env={**env(), "WORKER_RUNTIME_TARGET": server.target},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{block.id} did not finish within {BOUND}s") from None
    text = f"--- stdout\n{out.decode(errors='replace')}\n--- stderr\n{err.decode(errors='replace')}"
    assert proc.returncode == 0, f"{block.id} exited {proc.returncode}\n{text}"
    assert "Traceback" not in text, text
    assert out.strip(), f"{block.id} printed nothing\n{text}"
