"""The installed ``worker-runtime`` console script, run as a user would: :func:`cli` runs one
command against a target and returns ``(exit code, stdout, stderr)``. Tests that need the script
skip where it is not installed (``pytestmark = needs_console_script``)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

CLI = Path(sys.executable).parent / "worker-runtime"
BOUND = 30.0  # seconds: a safety net on a shared machine, never a speed assertion

needs_console_script = pytest.mark.skipif(
    not CLI.exists(), reason="the console script is not installed"
)


async def cli(target: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        str(CLI), "--target", target, *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), BOUND)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
