"""The Backend's bundle directory is read within bounds (backend.bundle_files): at most
MAX_FILES bundle files (more: refused whole, no file read), and a file is read only if it is a
regular file, opened without blocking — a FIFO swapped in for a bundle between the directory's
listing and the read made the Backend's scan wait forever for a writer. Real files and a real
FIFO in a temporary directory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from backend.bundle_files import MAX_FILES, BundleFiles, LocalBundle, read_bundle

TEAM = b'[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\n'


def test_more_bundle_files_than_the_bound_are_refused_whole(tmp_path: Path) -> None:
    for i in range(MAX_FILES):
        (tmp_path / f"b{i:04d}.toml").write_bytes(TEAM)
    (tmp_path / ".swap.toml").write_bytes(b"not counted")
    assert len(BundleFiles(tmp_path).scan()) == MAX_FILES  # at the bound: read
    (tmp_path / "one-more.toml").write_bytes(TEAM)
    with pytest.raises(OSError, match=f"more than {MAX_FILES} bundle files"):
        BundleFiles(tmp_path).scan()


def test_a_fifo_read_as_a_bundle_is_an_error_not_a_wait(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.toml"
    os.mkfifo(fifo)
    result: list[LocalBundle] = []
    # in a thread: a read that waited for a writer would hang the test, not fail it
    t = threading.Thread(target=lambda: result.append(read_bundle(fifo)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "reading the FIFO waited for a writer"
    [bundle] = result
    assert not bundle.ok
    assert bundle.error == "not a regular file"
    assert BundleFiles(tmp_path).scan() == {}  # (listed, it is skipped as before)
