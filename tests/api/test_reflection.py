"""Server reflection answers under ``grpc.reflection.v1`` (what grpcurl and newer tools ask first)
as well as v1alpha, and can describe the v1 service itself."""

from __future__ import annotations

from typing import TYPE_CHECKING

import grpc
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2

from runtime_server.grpc import SERVICE_NAMES

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 10.0
V1 = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
V1ALPHA = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


async def ask(
    channel: grpc.aio.Channel, method: str, request: reflection_pb2.ServerReflectionRequest
) -> reflection_pb2.ServerReflectionResponse:
    # The v1 and v1alpha messages are the same on the wire (same fields, same numbers): a v1
    # client's bytes are exactly these.
    call = channel.stream_stream(
        method,
        request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
        response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
    )(iter([request]), timeout=BOUND)
    try:
        response: reflection_pb2.ServerReflectionResponse = await call.read()
    finally:
        call.cancel()
    return response


async def test_v1_reflection_lists_and_describes(serve: ServeFactory) -> None:
    served = await serve()
    channel = served.client.channel
    listed = await ask(channel, V1, reflection_pb2.ServerReflectionRequest(list_services=""))
    names = {s.name for s in listed.list_services_response.service}
    assert set(SERVICE_NAMES) <= names
    assert {"grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"} <= (
        names
    )
    assert "grpc.health.v1.Health" in names

    for symbol in (
        "worker_runtime.v1.CatalogService",
        "grpc.reflection.v1.ServerReflection",
        "grpc.health.v1.Health",
    ):
        answer = await ask(
            channel, V1, reflection_pb2.ServerReflectionRequest(file_containing_symbol=symbol)
        )
        assert answer.WhichOneof("message_response") == "file_descriptor_response", symbol
        files = [
            descriptor_pb2.FileDescriptorProto.FromString(raw)
            for raw in answer.file_descriptor_response.file_descriptor_proto
        ]
        package, _, service = symbol.rpartition(".")
        assert any(
            f.package == package and service in {s.name for s in f.service} for f in files
        ), symbol

    # v1alpha still answers the same list.
    old = await ask(channel, V1ALPHA, reflection_pb2.ServerReflectionRequest(list_services=""))
    assert {s.name for s in old.list_services_response.service} == names
