"""``worker-runtime bundles put FILE`` reads at most 4 MiB of FILE. Before, it read the whole
file: a path given by mistake (``/dev/zero``, a pipe that never ends) took all the memory there
was. Run as a user would, under an address-space limit so the unbounded read fails fast instead
of straining the machine."""

from __future__ import annotations

import resource
import subprocess
from pathlib import Path

import pytest
from console_script import CLI, needs_console_script

pytestmark = needs_console_script
BOUND = 60.0


def _limited() -> None:
    limit = 1 << 30  # 1 GiB of address space: plenty for the CLI, far below an endless read
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.skipif(not Path("/dev/zero").exists(), reason="no /dev/zero")
def test_an_endless_file_is_refused_not_read_whole() -> None:
    done = subprocess.run(
        [str(CLI), "--target", "127.0.0.1:1", "bundles", "put", "/dev/zero", "--id", "z"],
        capture_output=True,
        timeout=BOUND,
        check=False,
        preexec_fn=_limited,  # a resource limit, set before exec
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2, stderr
    assert "/dev/zero is larger than 4194304 bytes" in stderr
    assert "Traceback" not in stderr
