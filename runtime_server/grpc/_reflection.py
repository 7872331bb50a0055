"""Server reflection under both names: ``grpc.reflection.v1.ServerReflection`` (what grpcurl and
newer tools ask first) and ``grpc.reflection.v1alpha.ServerReflection``.

grpcio-reflection (1.78) ships only v1alpha. The v1 protocol is the same file under a new package:
every message and field number is identical, so one servicer answers both, its messages encoded
by the v1alpha classes. For ``describe`` to work on the v1 service itself, its descriptor is
derived from the v1alpha one (package and file name renamed) and added to the default pool once.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

V1ALPHA_SERVICE = reflection.SERVICE_NAME
V1_SERVICE = "grpc.reflection.v1.ServerReflection"
V1_FILE = "grpc/reflection/v1/reflection.proto"


def _ensure_v1_descriptor() -> None:
    with contextlib.suppress(ImportError):
        # A grpcio-reflection that ships v1 registers the real file: use it, never a rival copy.
        importlib.import_module("grpc_reflection.v1.reflection_pb2")
    pool = descriptor_pool.Default()  # type: ignore[no-untyped-call]
    try:
        pool.FindFileByName(V1_FILE)
        return  # someone (a newer grpcio-reflection) registered it already
    except KeyError:
        pass
    proto = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(proto)
    old, new = f".{proto.package}.", ".grpc.reflection.v1."
    proto.name, proto.package = V1_FILE, "grpc.reflection.v1"
    for message in proto.message_type:
        for field in message.field:
            if field.type_name.startswith(old):
                field.type_name = new + field.type_name[len(old) :]
    for service in proto.service:
        for method in service.method:
            method.input_type = new + method.input_type[len(old) :]
            method.output_type = new + method.output_type[len(old) :]
    pool.Add(proto)


def add_reflection(service_names: Iterable[str], server: Any) -> None:
    """Serve reflection (v1 and v1alpha) for ``service_names`` and both reflection services."""
    _ensure_v1_descriptor()
    names = (*service_names, V1_SERVICE, V1ALPHA_SERVICE)
    servicer = reflection.aio.ReflectionServicer(names)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)
    handlers = {
        "ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            servicer.ServerReflectionInfo,
            request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
            response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
        )
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(V1_SERVICE, handlers),))
    server.add_registered_method_handlers(V1_SERVICE, handlers)
