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
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from runtime_client._bundles import ConfigBundleContent, ConfigBundlePut
from runtime_client._models import ConfigBundleRef, Created
from runtime_client.errors import ConfigBundleNotFound

__all__ = ["BundleDirectory", "BundleFile"]


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

    async def create_worker(self, **kwargs: Any) -> Created: ...


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
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def scan(self) -> dict[str, BundleFile]:
        """Every ``*.toml`` file not starting with ``.``, by bundle id (read now)."""
        out: dict[str, BundleFile] = {}
        for p in sorted(self.path.glob("*.toml")):
            if p.is_file() and not p.name.startswith("."):
                content = p.read_bytes()
                digest = "sha256:" + hashlib.sha256(content).hexdigest()
                out[p.stem] = BundleFile(p.stem, digest, content, p)
        return out

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
