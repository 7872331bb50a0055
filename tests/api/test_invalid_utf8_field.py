"""A body that is sound protobuf except that a string field's bytes are not UTF-8 (what a client in
another language, or a hand-made body, can send) answers MALFORMED_REQUEST naming that field —
``labels[team]``, ``workspace.mounts[1].path`` — instead of ``request``. Raw bytes to a real
grpc.aio server; the field is found on the error path only (runtime_server.grpc._wire_utf8).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from serving import ServeFactory, error_info

from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import interaction_service_pb2 as ipb
from runtime_client.api import observation_service_pb2 as opb
from runtime_client.api import types_pb2 as tpb
from runtime_server.grpc._wire_utf8 import invalid_utf8_field

BOUND = 20.0
MARK = "@@bad-bytes@@"  # serialized, then swapped for as many bytes that are not UTF-8
NOT_UTF8 = b"\xff" * len(MARK)
WID = "0190a0a0-0000-7000-8000-000000000000"
CATALOG = "/worker_runtime.v1.CatalogService/"


def body(message: Message) -> bytes:
    data = message.SerializeToString()
    assert data.count(MARK.encode()) == 1
    return data.replace(MARK.encode(), NOT_UTF8)


CASES: list[tuple[str, bytes, str]] = [
    (CATALOG + "GetWorker", body(cpb.GetWorkerRequest(worker_id=MARK)), "worker_id"),
    (
        CATALOG + "CreateWorker",
        body(cpb.CreateWorkerRequest(profile="echo", display_name=MARK)),
        "display_name",
    ),
    (
        CATALOG + "CreateWorker",
        body(cpb.CreateWorkerRequest(profile="echo", labels={"a": "1", "team": MARK})),
        "labels[team]",
    ),
    (
        CATALOG + "CreateWorker",
        body(
            cpb.CreateWorkerRequest(
                profile="echo",
                workspace=tpb.Workspace(
                    root="/tmp", mounts=[tpb.Mount(path="/a"), tpb.Mount(path=MARK)]
                ),
            )
        ),
        "workspace.mounts[1].path",
    ),
    (
        "/worker_runtime.v1.InteractionService/SendInput",
        body(ipb.SendInputRequest(worker_id=WID, text="hi " + MARK)),
        "text",
    ),
    (
        "/worker_runtime.v1.ObservationService/SubscribeEvents",
        body(opb.SubscribeEventsRequest(payload_types=["text_delta", MARK])),
        "payload_types[1]",
    ),
    # a body broken in another way still names the request
    (CATALOG + "GetWorker", b"\x0a\x05ab", "request"),
]


def identity(data: bytes) -> bytes:
    return data


@pytest.mark.parametrize(("method", "data", "field"), CASES)
async def test_the_field_that_is_not_utf8_is_named(
    serve: ServeFactory, method: str, data: bytes, field: str
) -> None:
    served = await serve()
    async with grpc.aio.insecure_channel(served.target) as channel:
        call: Callable[..., Any]
        if method.endswith("SubscribeEvents"):
            stream = channel.unary_stream(
                method, request_serializer=identity, response_deserializer=identity
            )(data, timeout=BOUND)
            call = stream.read
        else:
            unary = channel.unary_unary(
                method, request_serializer=identity, response_deserializer=identity
            )

            async def call() -> Any:
                return await unary(data, timeout=BOUND)

        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await call()
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    info = error_info(refused.value)
    assert info.reason == "MALFORMED_REQUEST"
    assert info.metadata["field"] == field
    assert info.metadata["method"] == method
    if field != "request":
        assert field in (refused.value.details() or "")


def test_nesting_and_truncation_never_raise() -> None:
    descriptor = cpb.CreateWorkerRequest.DESCRIPTOR
    good = body(cpb.CreateWorkerRequest(display_name=MARK))
    for cut in range(len(good)):  # every prefix: broken or not, an answer, never an exception
        assert invalid_utf8_field(descriptor, good[:cut]) in (None, "display_name")
    assert invalid_utf8_field(descriptor, b"\x32" + b"\xff" * 10) is None  # a cut length
