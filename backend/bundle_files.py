"""The Backend's bundle directory, read into :class:`LocalBundle` values (``backend._bundle_sync``
pushes them).

Which files count: every regular file named ``*.toml`` directly in the directory, not starting
with ``.`` (editors' swap and backup files). Sub-directories and other files are ignored. A file is
one bundle: its id is the file name's stem (``helper.toml`` → ``helper``), its content the file's
exact bytes, its digest ``sha256:<hex>`` of those bytes — what a runtime computes — so a
reference ``id@digest`` is known without asking any runtime.

Checked here, per file, so one bad file never hides the others: the id (the runtimes' charset,
at most 128 characters), the size (at most :data:`MAX_FILE_BYTES`; each runtime applies its own
``max_bundle_bytes`` on put), UTF-8, TOML syntax (the error names the line) and that
``profiles`` is a table. A bad file is listed with its error and pushed nowhere. Everything else
(forbidden keys, host policy) is each runtime's judgement, made on put and reported per runtime.

Re-reading is cheap: a file whose (size, mtime, inode) has not changed is not read again.

Bounded: at most :data:`MAX_FILES` bundle files (a runtime's default ``max_bundles``); a
directory with more is refused whole (an OSError naming the bound: at start, a config error;
later, a warning and the last good read kept), its names listed without reading any file. A
file is opened without blocking and read only if it is a regular file, so a FIFO swapped in
for a bundle never makes the Backend wait for a writer.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MAX_FILES", "MAX_FILE_BYTES", "BundleFiles", "LocalBundle"]

MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILES = 1000
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


@dataclass(frozen=True, slots=True)
class LocalBundle:
    """One file of the directory. ``error`` is "" for a bundle that can be pushed."""

    id: str
    file: str  # the file's name (never its full path: the browser sees this)
    digest: str = ""
    content: bytes = b""
    profiles: tuple[str, ...] = ()
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def read_bundle(path: Path) -> LocalBundle:
    """``path`` as a bundle (its error set when it cannot be one)."""
    bundle_id, name = path.stem, path.name
    if not ID_PATTERN.fullmatch(bundle_id):
        why = "is not a bundle id (letters, digits, '.', '_', '-'; at most 128 characters)"
        return LocalBundle(bundle_id, name, error=f"file name: {bundle_id!r} {why}")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return LocalBundle(bundle_id, name, error="not a regular file")
            content = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        return LocalBundle(bundle_id, name, error=f"cannot read: {exc.strerror or exc}")
    if len(content) > MAX_FILE_BYTES:
        return LocalBundle(bundle_id, name, error=f"larger than {MAX_FILE_BYTES} bytes")
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    try:
        data = tomllib.loads(content.decode("utf-8"))
    except UnicodeDecodeError:
        return LocalBundle(bundle_id, name, digest, error="not UTF-8 text")
    except tomllib.TOMLDecodeError as exc:
        return LocalBundle(bundle_id, name, digest, error=f"not valid TOML: {exc}")
    except RecursionError:  # tomllib recurses per nesting level: `a = [[[…]]]` a few hundred deep
        return LocalBundle(bundle_id, name, digest, error="not valid TOML: nested too deeply")
    profiles = data.get("profiles", {})
    if not isinstance(profiles, dict):
        return LocalBundle(bundle_id, name, digest, error="profiles: must be a table")
    return LocalBundle(bundle_id, name, digest, content, tuple(sorted(profiles)))


class BundleFiles:
    """The directory, read on :meth:`scan` (unchanged files come from the last read)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen: dict[str, tuple[tuple[int, int, int], LocalBundle]] = {}

    def scan(self) -> dict[str, LocalBundle]:
        """Every bundle file now, by id (OSError if the directory itself cannot be listed, or
        holds more than MAX_FILES bundle files)."""
        found: dict[str, LocalBundle] = {}
        seen: dict[str, tuple[tuple[int, int, int], LocalBundle]] = {}
        names: list[str] = []
        with os.scandir(self.directory) as entries:
            for entry in entries:
                if not entry.name.endswith(".toml") or entry.name.startswith("."):
                    continue
                names.append(entry.name)
                if len(names) > MAX_FILES:
                    raise OSError(f"more than {MAX_FILES} bundle files (*.toml): none is read")
        for path in (self.directory / n for n in sorted(names)):
            try:
                st = path.stat()
            except OSError:
                continue  # removed while we looked
            if not path.is_file():
                continue
            key = (st.st_size, st.st_mtime_ns, st.st_ino)
            prior = self._seen.get(path.name)
            bundle = prior[1] if prior is not None and prior[0] == key else read_bundle(path)
            seen[path.name] = (key, bundle)
            found[bundle.id] = bundle
        self._seen = seen
        return found
