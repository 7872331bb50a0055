"""A server that lacks a method (an older Runtime than the client, or another gRPC service at the
address) answers UNIMPLEMENTED. The client raised it as InternalError — "the server failed" —
so a caller could not tell "upgrade the runtime" from a crash. It is now ``Unimplemented``, its
own family (not an InternalError), over a real grpc.aio server that has only some services.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from runtime_client import RuntimeClient, RuntimeServiceError, Unimplemented
from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import catalog_service_pb2_grpc as cgrpc
from runtime_client.errors import InternalError, StatusCode, from_status


class OldCatalog(cgrpc.CatalogServiceServicer):
    """An "older runtime": a CatalogService with nothing implemented but GetWorker (grpc's
    generated base answers UNIMPLEMENTED for the rest), and no other service at all."""

    async def GetWorker(
        self, request: cpb.GetWorkerRequest, context: object
    ) -> cpb.GetWorkerResponse:
        return cpb.GetWorkerResponse()


@pytest.fixture
async def old_server() -> AsyncIterator[str]:
    server = grpc.aio.server()
    # the stubs declare every RPC abstract; grpc's generated base answers UNIMPLEMENTED for them
    cgrpc.add_CatalogServiceServicer_to_server(OldCatalog(), server)  # type: ignore[abstract]
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        await server.stop(0)


async def test_a_service_the_server_lacks_is_unimplemented(old_server: str) -> None:
    async with RuntimeClient(old_server) as client:
        with pytest.raises(Unimplemented) as raised:
            await client.get_runtime()  # ManagementService: not registered at all
    err = raised.value
    assert err.code is StatusCode.UNIMPLEMENTED
    assert err.reason == "UNIMPLEMENTED"
    assert not isinstance(err, InternalError)  # "upgrade the runtime", not "the server failed"
    assert isinstance(err, RuntimeServiceError)


async def test_a_method_the_service_lacks_is_unimplemented(old_server: str) -> None:
    async with RuntimeClient(old_server) as client:
        with pytest.raises(Unimplemented):
            await client.list_workers()  # the service is there, this method is not
        await client.get_worker("0190a0a0-0000-7000-8000-000000000000")  # this one is


def test_the_status_code_maps_the_same_from_its_parts() -> None:
    # what the embedded handle and the Backend use
    err = from_status(StatusCode.UNIMPLEMENTED, "Method not found!", None, {})
    assert type(err) is Unimplemented
