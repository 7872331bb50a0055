"""Config bundles on the client side (issue 13): the models (``ConfigBundle``, ``ConfigBundlePut``,
``ConfigBundleContent``), their conversion from the wire, and the ConfigService calls that
``RuntimeClient`` inherits from :class:`BundleCalls`. Kept in a module of their own so the client's
big modules do not grow; the rules of ``_models`` (frozen, keyword-built) and ``_convert``
(the wire's names, times as float seconds) hold here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from runtime_client._convert import ts
from runtime_client._models import ConfigBundleRef, Page
from runtime_client._text import request
from runtime_client.api import config_service_pb2 as config_pb
from runtime_client.api import config_service_pb2_grpc as config_grpc

__all__ = ["BundleCalls", "ConfigBundle", "ConfigBundleContent", "ConfigBundlePut", "config_bundle"]


@dataclass(frozen=True, slots=True)
class ConfigBundle:
    """A config bundle stored on a runtime: ``digest`` is ``sha256:<hex>`` of its exact bytes.
    ``referencing_workers`` lists at most the first 100 (``referencing_worker_count`` has all)."""

    id: str
    digest: str
    media_type: str = ""
    size_bytes: int = 0
    created_at: float = 0.0
    profiles: tuple[str, ...] = ()
    referencing_workers: tuple[str, ...] = ()
    annotations: Mapping[str, str] = field(default_factory=dict)
    referencing_worker_count: int = 0

    @property
    def ref(self) -> ConfigBundleRef:
        """The reference CreateWorker takes."""
        return ConfigBundleRef(self.id, self.digest)


@dataclass(frozen=True, slots=True)
class ConfigBundlePut:
    """What ``put_bundle`` did: ``created`` is False when these bytes were already stored."""

    bundle: ConfigBundle
    created: bool


@dataclass(frozen=True, slots=True)
class ConfigBundleContent:
    """``get_bundle``'s answer: the metadata, and the bytes when asked for (else ``b""``)."""

    bundle: ConfigBundle
    content: bytes = b""


def config_bundle(m: config_pb.ConfigBundle) -> ConfigBundle:
    return ConfigBundle(
        id=m.id,
        digest=m.digest,
        media_type=m.media_type,
        size_bytes=m.size_bytes,
        created_at=ts(m.created_at),
        profiles=tuple(m.profiles),
        referencing_workers=tuple(m.referencing_workers),
        annotations=dict(m.annotations),
        referencing_worker_count=m.referencing_worker_count,
    )


class BundleCalls:
    """RuntimeClient's ConfigService methods (it provides ``_channel`` and ``_unary``)."""

    _channel: Any
    _unary: Any

    @property
    def _config_stub(self) -> config_grpc.ConfigServiceAsyncStub:
        stub = self.__dict__.get("_config_stub_")
        if stub is None:  # the runtime class is the sync-typed stub (see RuntimeClient._setup)
            stub = cast(
                "config_grpc.ConfigServiceAsyncStub", config_grpc.ConfigServiceStub(self._channel)
            )
            self.__dict__["_config_stub_"] = stub
        return stub

    async def put_bundle(
        self,
        id: str,
        content: bytes,
        *,
        media_type: str = "",
        expected_digest: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> ConfigBundlePut:
        """Store a config bundle (TOML bytes, sent and digested exactly as given). Putting bytes
        already stored under ``id`` answers ``created=False`` (so a retry is harmless);
        ``expected_digest`` that differs from the content's raises DigestMismatch."""
        req = request(
            config_pb.PutConfigBundleRequest,
            id=id,
            content=content,
            media_type=media_type,
            expected_digest=expected_digest,
            annotations=dict(annotations or {}),
        )
        resp = await self._unary(self._config_stub.PutConfigBundle, req, safe=True)
        return ConfigBundlePut(config_bundle(resp.bundle), resp.created)

    async def get_bundle(
        self,
        id: str,
        digest: str,
        *,
        include_content: bool = False,
    ) -> ConfigBundleContent:
        """A bundle's metadata, and its bytes with ``include_content``."""
        req = request(
            config_pb.GetConfigBundleRequest, id=id, digest=digest, include_content=include_content
        )
        resp = await self._unary(self._config_stub.GetConfigBundle, req, safe=True)
        return ConfigBundleContent(config_bundle(resp.bundle), resp.content)

    async def list_bundles(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        id: str = "",
    ) -> Page[ConfigBundle]:
        """One page by id, then digest; ``id`` lists that id's versions only."""
        req = request(
            config_pb.ListConfigBundlesRequest, page_size=page_size, page_token=page_token, id=id
        )
        resp = await self._unary(self._config_stub.ListConfigBundles, req, safe=True)
        return Page(
            tuple(config_bundle(b) for b in resp.bundles),
            resp.next_page_token,
            resp.total_size,
        )

    async def delete_bundle(self, id: str, digest: str) -> None:
        """Remove a bundle; ConfigBundleInUse while a worker (not yet deleted) references it."""
        req = request(config_pb.DeleteConfigBundleRequest, id=id, digest=digest)
        await self._unary(self._config_stub.DeleteConfigBundle, req)
