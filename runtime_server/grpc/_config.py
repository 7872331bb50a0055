"""The ConfigService servicer: config bundles (put, get, list, delete) over gRPC. Thin like the
others: the rules live in ``runtime_server.runtime._bundles``, conversions in ``_convert``,
errors in ``_errors`` (through the shared ``unary`` wrapper)."""

from __future__ import annotations

from typing import Any

from runtime_client.api import config_service_pb2 as cfpb
from runtime_client.api import config_service_pb2_grpc as cfgrpc
from runtime_server.grpc import _convert as cv
from runtime_server.grpc._servicers import Ctx, _Base, unary
from runtime_server.runtime import Runtime

SERVICE_NAME = cfpb.DESCRIPTOR.services_by_name["ConfigService"].full_name


class ConfigServicer(_Base, cfgrpc.ConfigServiceServicer):
    @unary
    async def PutConfigBundle(
        self, request: cfpb.PutConfigBundleRequest, context: Ctx
    ) -> cfpb.PutConfigBundleResponse:
        bundle, created = await self._runtime.config_bundles.put_bundle(
            request.id,
            request.content,
            media_type=request.media_type,
            expected_digest=request.expected_digest,
            annotations=dict(request.annotations),
        )
        return cfpb.PutConfigBundleResponse(bundle=cv.config_bundle_info(bundle), created=created)

    @unary
    async def GetConfigBundle(
        self, request: cfpb.GetConfigBundleRequest, context: Ctx
    ) -> cfpb.GetConfigBundleResponse:
        found = await self._runtime.config_bundles.get_bundle(
            request.id, request.digest, include_content=request.include_content
        )
        return cfpb.GetConfigBundleResponse(
            bundle=cv.config_bundle_info(found.bundle), content=found.content
        )

    @unary
    async def ListConfigBundles(
        self, request: cfpb.ListConfigBundlesRequest, context: Ctx
    ) -> cfpb.ListConfigBundlesResponse:
        page = await self._runtime.config_bundles.list_bundles(
            page_size=request.page_size, page_token=request.page_token, id=request.id
        )
        return cfpb.ListConfigBundlesResponse(
            bundles=[cv.config_bundle_info(b) for b in page.items],
            next_page_token=page.next_page_token,
            total_size=page.total_size,
        )

    @unary
    async def DeleteConfigBundle(
        self, request: cfpb.DeleteConfigBundleRequest, context: Ctx
    ) -> cfpb.DeleteConfigBundleResponse:
        await self._runtime.config_bundles.delete_bundle(request.id, request.digest)
        return cfpb.DeleteConfigBundleResponse()


def add_config_service(runtime: Runtime, server: Any) -> None:
    """Register the ConfigService on ``server`` (the decode-guarded target)."""
    cfgrpc.add_ConfigServiceServicer_to_server(ConfigServicer(runtime), server)
