"""The routed handle's ConfigService calls (``RoutedHandle`` inherits them): the registry's
routing check first, then the runtime's own handle, as for every other call (see ``_routed``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from runtime_client._bundles import ConfigBundle, ConfigBundleContent, ConfigBundlePut
from runtime_client._models import Page
from runtime_client.errors import DeadlineExceeded, Unavailable

if TYPE_CHECKING:
    from runtime_client._runtime_entry import RuntimeEntry

_CUT = (Unavailable, DeadlineExceeded)


class RoutedBundleCalls:
    __slots__ = ()
    _entry: RuntimeEntry

    async def put_bundle(
        self,
        id: str,
        content: bytes,
        *,
        media_type: str = "",
        expected_digest: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> ConfigBundlePut:
        h = self._entry.check()
        try:
            return await h.put_bundle(
                id,
                content,
                media_type=media_type,
                expected_digest=expected_digest,
                annotations=annotations,
            )
        except _CUT:
            self._entry.poke()
            raise

    async def get_bundle(
        self, id: str, digest: str, *, include_content: bool = False
    ) -> ConfigBundleContent:
        h = self._entry.check()
        try:
            return await h.get_bundle(id, digest, include_content=include_content)
        except _CUT:
            self._entry.poke()
            raise

    async def list_bundles(
        self, *, page_size: int = 0, page_token: str = "", id: str = ""
    ) -> Page[ConfigBundle]:
        h = self._entry.check()
        try:
            return await h.list_bundles(page_size=page_size, page_token=page_token, id=id)
        except _CUT:
            self._entry.poke()
            raise

    async def delete_bundle(self, id: str, digest: str) -> None:
        h = self._entry.check()
        try:
            await h.delete_bundle(id, digest)
        except _CUT:
            self._entry.poke()
            raise
