"""The repository's own Python sources, for the tests that read them (source sizes, import rules,
logger names).

In a git checkout these are the files git tracks: an untracked scratch file, an editor's backup or
a half-merged leftover in a developer's tree never fails those tests, while CI (a fresh clone,
where tracked and present agree) checks exactly what is committed. Outside a checkout (an exported
tree) every ``*.py`` file under the package counts.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def _tracked() -> frozenset[str] | None:
    """Paths (POSIX, relative to the root) git tracks; None when this is not a git checkout."""
    try:
        proc = subprocess.run(
            ["git", "-C", str(ROOT), "ls-files", "-z", "--cached"],
            capture_output=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return frozenset(p for p in proc.stdout.decode().split("\0") if p)


def python_files(directory: Path) -> list[Path]:
    """The ``*.py`` files under ``directory`` (sorted), tracked ones only in a git checkout."""
    found = sorted(directory.rglob("*.py"))
    tracked = _tracked()
    if tracked is None:
        return found
    return [p for p in found if p.relative_to(ROOT).as_posix() in tracked]
