"""``BundleDirectory.scan`` is bounded (runtime_client._bundle_dir): each file at most
``max_file_bytes`` (default: a runtime's default ``max_bundle_bytes``), at most ``max_files``
files (default: a runtime's default ``max_bundles``), only regular files — with a typed
BundleDirectoryError naming the file and why, never a read of whatever is there. Before, a scan
read every file whole however large or many, and skipped a FIFO or a symlink loop in silence.
Real files, a real FIFO and real symlinks in a temporary directory."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from runtime_client import BundleDirectory, BundleDirectoryError

TEAM = b'[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\n'
DEFAULT_BUNDLE_BYTES = 256 * 1024  # a runtime's default max_bundle_bytes


@pytest.fixture
def bundles(tmp_path: Path) -> Path:
    d = tmp_path / "bundles"
    d.mkdir()
    (d / "team.toml").write_bytes(TEAM)
    return d


def test_a_file_past_the_bundle_size_bound_is_refused(bundles: Path) -> None:
    (bundles / "edge.toml").write_bytes(b"#" * DEFAULT_BUNDLE_BYTES)  # exactly at it: taken
    assert len(BundleDirectory(bundles).scan()["edge"].content) == DEFAULT_BUNDLE_BYTES
    big = bundles / "huge.toml"
    with big.open("wb") as f:  # sparse: 1 GiB costs no disk, and is not read
        f.truncate(1 << 30)
    with pytest.raises(BundleDirectoryError) as caught:
        BundleDirectory(bundles).scan()
    err = caught.value
    assert (err.reason, err.path, err.limit) == ("FILE_TOO_LARGE", big, DEFAULT_BUNDLE_BYTES)
    assert "huge.toml" in str(err)
    assert "max_file_bytes" in str(err)
    # the bound is the caller's to set
    small = BundleDirectory(bundles, max_file_bytes=len(TEAM))
    big.unlink()
    with pytest.raises(BundleDirectoryError, match=r"edge\.toml"):
        small.scan()


def test_more_files_than_the_bound_are_refused(bundles: Path) -> None:
    for i in range(1000):  # with team.toml: 1001, one past the default
        (bundles / f"b{i:04d}.toml").write_bytes(TEAM)
    (bundles / ".swap.toml").write_bytes(b"not counted")
    (bundles / "notes.txt").write_bytes(b"not counted")
    with pytest.raises(BundleDirectoryError) as caught:
        BundleDirectory(bundles).scan()
    assert (caught.value.reason, caught.value.limit) == ("TOO_MANY_FILES", 1000)
    assert caught.value.path == bundles
    (bundles / "b0000.toml").unlink()  # at the bound: taken
    assert len(BundleDirectory(bundles).scan()) == 1000
    assert len(BundleDirectory(bundles, max_files=5000).scan()) == 1000


def test_a_fifo_is_refused_without_waiting_for_a_writer(bundles: Path) -> None:
    fifo = bundles / "pipe.toml"
    os.mkfifo(fifo)
    result: list[BaseException | object] = []
    # in a thread: a scan that waited for a writer would hang the test, not fail it
    t = threading.Thread(target=lambda: result.append(_scan_error(bundles)), daemon=True)
    t.start()
    t.join(30)
    assert not t.is_alive(), "the scan waited on the FIFO"
    [err] = result
    assert isinstance(err, BundleDirectoryError)
    assert (err.reason, err.path) == ("NOT_A_REGULAR_FILE", fifo)


def test_a_directory_named_like_a_bundle_is_refused(bundles: Path) -> None:
    (bundles / "dir.toml").mkdir()
    err = _scan_error(bundles)
    assert isinstance(err, BundleDirectoryError)
    assert err.reason in ("NOT_A_REGULAR_FILE", "UNREADABLE")  # (O_RDONLY on a directory)


def test_a_symlink_loop_is_refused_and_a_symlink_to_a_file_is_followed(bundles: Path) -> None:
    (bundles / "alias.toml").symlink_to(bundles / "team.toml")
    found = BundleDirectory(bundles).scan()
    assert found["alias"].content == TEAM
    (bundles / "a.toml").symlink_to(bundles / "b.toml")
    (bundles / "b.toml").symlink_to(bundles / "a.toml")
    err = _scan_error(bundles)
    assert isinstance(err, BundleDirectoryError)
    assert err.reason == "UNREADABLE"
    assert "symlink loop" in str(err)


def _scan_error(path: Path) -> BaseException | None:
    try:
        BundleDirectory(path).scan()
    except BundleDirectoryError as exc:
        return exc
    return None
