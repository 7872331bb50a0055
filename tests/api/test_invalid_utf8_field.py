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


async def test_cut_bodies_are_answered_never_crash(serve: ServeFactory) -> None:
    # every prefix of a body with a bad string: broken protobuf (request) or the field named,
    # never UNKNOWN from the walk that looks for the field
    served = await serve()
    good = body(cpb.CreateWorkerRequest(profile="echo", display_name=MARK))
    async with grpc.aio.insecure_channel(served.target) as channel:
        unary = channel.unary_unary(
            CATALOG + "CreateWorker", request_serializer=identity, response_deserializer=identity
        )
        for cut in range(1, len(good)):
            failure = await _failure(unary, good[:cut])
            if failure is None:
                continue  # a prefix that decodes and is a valid request
            code, reason, field = failure
            assert code is not grpc.StatusCode.UNKNOWN
            if reason == "MALFORMED_REQUEST":
                assert field in ("request", "display_name")


async def _failure(unary: Any, data: bytes) -> tuple[grpc.StatusCode, str, str] | None:
    try:
        await unary(data, timeout=BOUND)
    except grpc.aio.AioRpcError as exc:
        info = error_info(exc)
        return exc.code(), info.reason, info.metadata.get("field", "")
    return None
