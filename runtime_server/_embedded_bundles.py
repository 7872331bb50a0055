"""The embedded handle's ConfigService methods (``EmbeddedRuntime`` inherits them): the same
answers and errors as ``RuntimeClient``'s for the same Runtime (tests/api/
test_embedded_bundles_match_client.py). Kept apart so the handle's class stays readable."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from runtime_client import ConfigBundle, ConfigBundleContent, ConfigBundlePut, Page
from runtime_server import _embedded_convert as cv

if TYPE_CHECKING:
    import contextlib

    from runtime_server.runtime import Runtime


class EmbeddedBundleCalls:
    """Needs ``_runtime`` and ``_translated`` (EmbeddedRuntime's)."""

    _runtime: Runtime

    if TYPE_CHECKING:

        def _translated(self) -> contextlib.AbstractContextManager[None]: ...

    async def put_bundle(
        self,
        id: str,
        content: bytes,
        *,
        media_type: str = "",
        expected_digest: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> ConfigBundlePut:
        """Store a config bundle; see RuntimeClient.put_bundle."""
        with self._translated():
            bundle, created = await self._runtime.config_bundles.put_bundle(
                id,
                bytes(content),
                media_type=media_type,
                expected_digest=expected_digest,
                annotations=cv.labels_in(annotations),
            )
            return ConfigBundlePut(bundle=cv.config_bundle(bundle), created=created)

    async def get_bundle(
        self,
        id: str,
        digest: str,
        *,
        include_content: bool = False,
    ) -> ConfigBundleContent:
        """A bundle's metadata, and its bytes with ``include_content``."""
        with self._translated():
            found = await self._runtime.config_bundles.get_bundle(
                id, digest, include_content=include_content
            )
            return ConfigBundleContent(bundle=cv.config_bundle(found.bundle), content=found.content)

    async def list_bundles(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        id: str = "",
    ) -> Page[ConfigBundle]:
        """One page by id, then digest; ``id`` lists that id's versions only."""
        cv.int32_in(page_size)
        with self._translated():
            page = await self._runtime.config_bundles.list_bundles(
                page_size=page_size, page_token=page_token, id=id
            )
            return cv.page(page, cv.config_bundle)

    async def delete_bundle(self, id: str, digest: str) -> None:
        """Remove a bundle; ConfigBundleInUse while a worker references it."""
        with self._translated():
            await self._runtime.config_bundles.delete_bundle(id, digest)
