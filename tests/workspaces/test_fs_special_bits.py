"""A file tool never leaves a set-user-ID, set-group-ID or sticky bit on a file it writes.

``write_file`` and ``edit_file`` replace a file by a new one and kept the old file's whole mode,
special bits included: over a set-user-ID program in a workspace, the model (or whoever injects
its instructions) wrote a new set-user-ID program, owned by the runtime's user (root, in many
containers), with its own content. The kernel itself drops these bits when a file is written;
now the tools keep only the permission bits. Real files on a real filesystem, through the real
tool registry (as the engine calls it).
"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from test_fs_escapes import call, registry


@pytest.mark.parametrize("tool", ["write_file", "edit_file"])
async def test_a_rewrite_drops_the_special_bits_and_keeps_the_permissions(
    tmp_path: Path, tool: str
) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    prog = root / "tool.sh"
    prog.write_text("#!/bin/sh\necho safe\n")
    prog.chmod(0o6755 | stat.S_ISVTX)
    assert stat.S_IMODE(prog.stat().st_mode) & 0o7000 == 0o7000
    args = (
        {"path": "tool.sh", "content": "#!/bin/sh\nid\n"}
        if tool == "write_file"
        else {"path": "tool.sh", "old": "echo safe", "new": "id"}
    )
    text, failed = await call(registry(root), tool, args)
    assert not failed, text
    assert "id" in prog.read_text()
    assert stat.S_IMODE(prog.stat().st_mode) == 0o755
