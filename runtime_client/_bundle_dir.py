"""``BundleDirectory``: config bundles kept as files, pushed to runtimes — the building block of a
Backend's bundle sync (issue 13 item 5), usable with any handle that has the client's
``put_bundle``/``create_worker`` (a ``RuntimeClient``, an ``EmbeddedRuntime``, a registry's handle).

Each ``*.toml`` file of the directory is one bundle (names starting with ``.`` — editors' swap and
backup files — are not; the same rule as the Backend's ``bundles_dir``): its id is the file's
stem, its digest the SHA-256 of its exact bytes (as the Runtime computes it), so a reference can
be made without asking any runtime. Two ways to get a bundle onto a runtime:

- eagerly, :meth:`push_all` (e.g. when a runtime first becomes READY);
- lazily, :meth:`create_worker`: a create that fails with ``CONFIG_BUNDLE_NOT_FOUND`` for a bundle
  this directory holds pushes that bundle (``expected_digest`` set: the bytes cannot have changed
  under the reference) and retries the create exactly once.

Files are read when asked for (:meth:`scan`), so editing a file makes a new version; the old
digest stays valid on the runtimes that have it.

Bounded: a scan reads at most ``max_files`` files (default 1000, a runtime's default
``max_bundles``), each at most ``max_file_bytes`` (default 256 KiB, a runtime's default
``max_bundle_bytes``: a larger file could not be put anyway), and only regular files (a
symlink to one is followed). Past a bound, or for a file that is not one — a FIFO (opened
without blocking: a scan never waits for a writer), a device, a directory named ``*.toml``, a
symlink loop, a file it may not read — the scan raises :class:`BundleDirectoryError` naming the
file (``path``) and why (``reason``): a directory it cannot take whole is refused, never read in
part. Before, a scan read every file whole, however large and however many, and a FIFO made it
wait forever.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runtime_client._bundles import ConfigBundleContent, ConfigBundlePut
from runtime_client._models import ConfigBundleRef, Created
from runtime_client.errors import ConfigBundleNotFound

__all__ = [
    "DEFAULT_MAX_BUNDLE_FILES",
    "DEFAULT_MAX_FILE_BYTES",
    "BundleDirectory",
    "BundleDirectoryError",
    "BundleFile",
]

DEFAULT_MAX_FILE_BYTES = 256 * 1024  # a runtime's default max_bundle_bytes
DEFAULT_MAX_BUNDLE_FILES = 1000  # a runtime's default max_bundles


class BundleDirectoryError(ValueError):
    """A bundle directory a scan cannot take: ``reason`` is ``TOO_MANY_FILES``,
    ``FILE_TOO_LARGE``, ``NOT_A_REGULAR_FILE`` or ``UNREADABLE``; ``path`` the file (the
    directory for ``TOO_MANY_FILES``); ``limit`` the bound passed (0 when none applies)."""

    def __init__(self, message: str, *, reason: str, path: Path, limit: int = 0) -> None:
        super().__init__(message)
        self.reason = reason
        self.path = path
        self.limit = limit


class _BundleHandle(Protocol):
    async def put_bundle(
        self,
        id: str,
        content: bytes,
        *,
        media_type: str = "",
        expected_digest: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> ConfigBundlePut: ...

    async def get_bundle(
        self, id: str, digest: str, *, include_content: bool = False
    ) -> ConfigBundleContent: ...

    # (*args: Any, **kwargs: Any) matches any signature, so RuntimeClient's and the embedded
    # handle's keyword-only create_worker satisfy it (**kwargs alone matches neither)
    async def create_worker(self, *args: Any, **kwargs: Any) -> Created: ...


@dataclass(frozen=True, slots=True)
class BundleFile:
    """One file of the directory: the bundle it is."""

    id: str
    digest: str
    content: bytes
    path: Path

    @property
    def ref(self) -> ConfigBundleRef:
        return ConfigBundleRef(self.id, self.digest)


class BundleDirectory:
    def __init__(
        self,
        path: str | Path,
        *,
        max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
        max_files: int = DEFAULT_MAX_BUNDLE_FILES,
    ) -> None:
        if max_file_bytes < 1:
            raise ValueError("max_file_bytes: must be >= 1")
        if max_files < 1:
            raise ValueError("max_files: must be >= 1")
        self.path = Path(path)
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files

    def scan(self) -> dict[str, BundleFile]:
        """Every ``*.toml`` file not starting with ``.``, by bundle id (read now; bounded, see
        the module doc: BundleDirectoryError past a bound or for a file that is not one)."""
        names: list[str] = []
        with os.scandir(self.path) as entries:
            for entry in entries:
                if not entry.name.endswith(".toml") or entry.name.startswith("."):
                    continue
                names.append(entry.name)
                if len(names) > self.max_files:  # stop listing: the directory is refused
                    raise BundleDirectoryError(
                        f"{self.path}: more than {self.max_files} bundle files (max_files)",
                        reason="TOO_MANY_FILES",
                        path=self.path,
                        limit=self.max_files,
                    )
        out: dict[str, BundleFile] = {}
        for name in sorted(names):
            p = self.path / name
            content = self._read(p)
            digest = "sha256:" + hashlib.sha256(content).hexdigest()
            out[p.stem] = BundleFile(p.stem, digest, content, p)
        return out

    def _read(self, p: Path) -> bytes:
        """The file's bytes, at most ``max_file_bytes``: opened without blocking (a FIFO), and
        read only once fstat says it is a regular file."""
        try:
            fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            why = "a symlink loop" if exc.errno == errno.ELOOP else (exc.strerror or str(exc))
            raise BundleDirectoryError(
                f"{p}: cannot read: {why}", reason="UNREADABLE", path=p
            ) from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise BundleDirectoryError(
                    f"{p}: not a regular file", reason="NOT_A_REGULAR_FILE", path=p
                )
            chunks: list[bytes] = []
            left = self.max_file_bytes + 1  # one byte more tells "too large"
            while left > 0:
                chunk = os.read(fd, min(left, 64 * 1024))
                if not chunk:
                    break
                chunks.append(chunk)
                left -= len(chunk)
        except OSError as exc:
            raise BundleDirectoryError(
                f"{p}: cannot read: {exc.strerror or exc}", reason="UNREADABLE", path=p
            ) from None
        finally:
            os.close(fd)
        if left <= 0:
            raise BundleDirectoryError(
                f"{p}: larger than {self.max_file_bytes} bytes (max_file_bytes)",
                reason="FILE_TOO_LARGE",
                path=p,
                limit=self.max_file_bytes,
            )
        return b"".join(chunks)

    def ref(self, bundle_id: str) -> ConfigBundleRef:
        """The reference to the current content of bundle ``bundle_id`` (KeyError if no file)."""
        return self.scan()[bundle_id].ref

    async def push_all(self, handle: _BundleHandle) -> dict[str, ConfigBundlePut]:
        """Put every bundle on ``handle``'s runtime (already stored ones answer created=False)."""
        return {
            f.id: await handle.put_bundle(f.id, f.content, expected_digest=f.digest)
            for f in self.scan().values()
        }

    async def availability(self, handle: _BundleHandle) -> dict[str, bool]:
        """Which of the directory's bundles (current digests) the runtime holds."""
        out: dict[str, bool] = {}
        for f in self.scan().values():
            try:
                await handle.get_bundle(f.id, f.digest)
                out[f.id] = True
            except ConfigBundleNotFound:
                out[f.id] = False
        return out

    async def create_worker(self, handle: _BundleHandle, **kwargs: Any) -> Created:
        """``handle.create_worker(**kwargs)``; on CONFIG_BUNDLE_NOT_FOUND for a bundle this
        directory holds at that digest, push it and retry once."""
        try:
            return await handle.create_worker(**kwargs)
        except ConfigBundleNotFound:
            ref = kwargs.get("config_bundle")
            found = self.scan().get(ref.id) if isinstance(ref, ConfigBundleRef) else None
            if found is None or found.digest != ref.digest:  # type: ignore[union-attr]
                raise  # not ours (or not these bytes): the caller's error stands
            await handle.put_bundle(found.id, found.content, expected_digest=found.digest)
        return await handle.create_worker(**kwargs)
