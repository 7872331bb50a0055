"""Bodies that are not valid protobuf, sent as raw bytes to a real ``serve`` process: they answer
INVALID_ARGUMENT with ErrorInfo MALFORMED_REQUEST — only after auth (no token: UNAUTHENTICATED) —
and 1,000 of them leave no traceback and only a few lines in the server's log. Unknown methods
answer UNAUTHENTICATED without a token, UNIMPLEMENTED with one."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from serving import ServeProcessFactory, error_info

from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import management_service_pb2 as mpb

TOKEN = "tok-malformed-4e1f0a9c7b"
TOKEN_ENV = "WR_MALFORMED_TOKEN"
BOUND = 20.0  # seconds per call: a safety net only
GOOD = (("authorization", f"Bearer {TOKEN}"),)
# Not a message of any type: an invalid wire type, a field longer than the body, a cut varint.
BAD_BODIES = [b"\xff\xff\xff\xff", b"\x0a\xff\x01", b"\x08"]
# Invalid for GetWorker only: its worker_id (field 1, a proto3 string) is not UTF-8.
NOT_UTF8 = ("/worker_runtime.v1.CatalogService/GetWorker", b"\x0a\x02\xff\xfe")
UNARY = [
    "/worker_runtime.v1.ManagementService/GetRuntime",
    "/worker_runtime.v1.CatalogService/GetWorker",
    "/worker_runtime.v1.CatalogService/CreateWorker",
    "/worker_runtime.v1.InteractionService/SendInput",
    "/worker_runtime.v1.ObservationService/ListEvents",
]
STREAMS = [
    "/worker_runtime.v1.ObservationService/SubscribeEvents",
    "/worker_runtime.v1.ObservationService/SubscribeEventBatches",
]


def identity(data: bytes) -> bytes:
    return data


async def call(
    channel: grpc.aio.Channel, method: str, body: bytes, metadata: Any = None
) -> grpc.aio.AioRpcError | bytes:
    """One raw call: unary, or the first message of a server stream."""
    try:
        if method in STREAMS:
            stream = channel.unary_stream(
                method, request_serializer=identity, response_deserializer=identity
            )(body, metadata=metadata, timeout=BOUND)
            try:
                first: bytes = await stream.read()
            finally:
                stream.cancel()
            return first
        unary: Callable[..., Any] = channel.unary_unary(
            method, request_serializer=identity, response_deserializer=identity
        )
        answer: bytes = await unary(body, metadata=metadata, timeout=BOUND)
        return answer
    except grpc.aio.AioRpcError as exc:
        return exc


def code_of(result: grpc.aio.AioRpcError | bytes) -> grpc.StatusCode:
    return result.code() if isinstance(result, grpc.aio.AioRpcError) else grpc.StatusCode.OK


@pytest.mark.parametrize("auth", [True, False], ids=["auth", "no-auth"])
async def test_undecodable_bodies_answer_invalid_argument_after_auth(
    auth: bool, serve_process: ServeProcessFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extra = ["--log-level", "INFO"]
    if auth:
        monkeypatch.setenv(TOKEN_ENV, TOKEN)
        extra += ["--auth-token-env", TOKEN_ENV]
    sp = await serve_process(None, store="memory", extra=extra)
    metadata = GOOD if auth else None
    async with grpc.aio.insecure_channel(sp.target) as channel:
        # A well-formed raw body works (the identity serializers are not the problem).
        ok = await call(channel, UNARY[0], mpb.GetRuntimeRequest().SerializeToString(), metadata)
        assert isinstance(ok, bytes)
        assert mpb.GetRuntimeResponse.FromString(ok).runtime.runtime_id

        cases = [(m, b) for m in UNARY + STREAMS for b in BAD_BODIES] + [NOT_UTF8]
        for method, body in cases:
            result = await call(channel, method, body, metadata)
            assert isinstance(result, grpc.aio.AioRpcError), (method, body)
            assert result.code() is grpc.StatusCode.INVALID_ARGUMENT, (method, body, result)
            info = error_info(result)
            assert info.domain == "worker-runtime"
            assert info.reason == "MALFORMED_REQUEST"
            # a sound body whose string is not UTF-8 names that field (test_invalid_utf8_field)
            named = "worker_id" if (method, body) == NOT_UTF8 else "request"
            assert info.metadata["field"] == named
            assert info.metadata["method"] == method
            if auth:  # the same body without the token: refused before it is decoded
                denied = await call(channel, method, body)
                assert code_of(denied) is grpc.StatusCode.UNAUTHENTICATED, (method, body)
                assert isinstance(denied, grpc.aio.AioRpcError)
                assert error_info(denied).reason == "UNAUTHENTICATED"

        # The server still works for the well-behaved.
        created = await call(
            channel,
            "/worker_runtime.v1.CatalogService/CreateWorker",
            cpb.CreateWorkerRequest(profile="echo").SerializeToString(),
            metadata,
        )
        assert isinstance(created, bytes)

        # 1,000 bad calls (with and without the token): answered, and the log stays quiet.
        before = sp.stderr().count("\n")
        codes: Counter[grpc.StatusCode] = Counter()
        for i in range(1000):
            method = UNARY[i % len(UNARY)]
            with_token = metadata if i % 2 == 0 else None
            body = BAD_BODIES[i % len(BAD_BODIES)]
            codes[code_of(await call(channel, method, body, with_token))] += 1
    expected_denied = 500 if auth else 0
    assert codes[grpc.StatusCode.INVALID_ARGUMENT] == 1000 - expected_denied, codes
    assert codes[grpc.StatusCode.UNAUTHENTICATED] == expected_denied, codes
    assert sp.terminate() == 0
    log = sp.stderr()
    assert "Traceback" not in log
    assert "DecodeError" not in log.replace("(DecodeError)", "")  # only in the one-line warning
    assert log.count("\n") - before <= 5, log[-2000:]
    assert "undecodable request" in log  # the rate-limited warning itself


async def test_unknown_methods_need_the_token_first(
    serve_process: ServeProcessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    sp = await serve_process(None, store="memory", extra=["--auth-token-env", TOKEN_ENV])
    async with grpc.aio.insecure_channel(sp.target) as channel:
        for method in (
            "/worker_runtime.v1.CatalogService/NoSuchMethod",
            "/no.such.Service/Method",
        ):
            denied = await call(channel, method, b"")
            assert code_of(denied) is grpc.StatusCode.UNAUTHENTICATED, method
            assert isinstance(denied, grpc.aio.AioRpcError)
            assert error_info(denied).reason == "UNAUTHENTICATED"
            allowed = await call(channel, method, b"", GOOD)
            assert code_of(allowed) is grpc.StatusCode.UNIMPLEMENTED, method


async def test_health_and_reflection_bodies_are_checked_too(
    serve_process: ServeProcessFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Health needs no token, so its bad bodies get INVALID_ARGUMENT at once; reflection (a
    bidirectional stream) checks each request message, after auth."""
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    sp = await serve_process(None, store="memory", extra=["--auth-token-env", TOKEN_ENV])
    async with grpc.aio.insecure_channel(sp.target) as channel:
        health = await call(channel, "/grpc.health.v1.Health/Check", BAD_BODIES[0])
        assert code_of(health) is grpc.StatusCode.INVALID_ARGUMENT
        assert isinstance(health, grpc.aio.AioRpcError)
        assert error_info(health).reason == "MALFORMED_REQUEST"
        for method in (
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ):
            for metadata, expected in ((None, "UNAUTHENTICATED"), (GOOD, "MALFORMED_REQUEST")):
                stream = channel.stream_stream(
                    method, request_serializer=identity, response_deserializer=identity
                )(metadata=metadata, timeout=BOUND)
                # Without a token the server ends the call at once, so the client sends
                # nothing: a send racing that end is reported by grpc as its own failure
                # (INTERNAL "Internal error from Core"), not as the server's status.
                if metadata is not None:
                    await stream.write(BAD_BODIES[1])
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await stream.read()
                assert error_info(caught.value).reason == expected, (method, metadata)
    assert sp.terminate() == 0
    assert "Traceback" not in sp.stderr()
