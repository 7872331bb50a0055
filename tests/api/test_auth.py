"""Guarantee 8 through the real server: every RPC but health needs the bearer token (reflection
too), and provider API keys never surface in a response, event, diagnostic, run error or log
line — while the provider itself does receive the key."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio
import pytest
from google.protobuf import descriptor, message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from serving import error_info

from engine.testing import LoopbackServer, Reply
from runtime_client import ProfileNotFound, RunState, RuntimeClient, Unauthenticated
from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import config_service_pb2 as cfpb
from runtime_client.api import interaction_service_pb2 as ipb
from runtime_client.api import management_service_pb2 as mpb
from runtime_client.api import observation_service_pb2 as opb
from runtime_server.grpc import SERVICE_NAMES

if TYPE_CHECKING:
    from serving import Served, ServeFactory, SpawnServer

TOKEN = "tok-3f9a1c77e0b24d8e"
BOUND = 30.0
FILES = (mpb, cpb, ipb, opb, cfpb)


def methods() -> Iterator[descriptor.MethodDescriptor]:
    for module in FILES:
        for service in module.DESCRIPTOR.services_by_name.values():
            yield from service.methods


ALL_METHODS = [f"{m.containing_service.full_name}/{m.name}" for m in methods()]


async def call(
    channel: grpc.aio.Channel, path: str, metadata: tuple[tuple[str, str], ...] | None
) -> Any:
    """Call ``path`` with an empty request; for a stream, read its first message."""
    service_name, name = path.split("/")
    method = next(m for m in methods() if f"{m.containing_service.full_name}/{m.name}" == path)
    request_cls = message_factory.GetMessageClass(method.input_type)
    response_cls = message_factory.GetMessageClass(method.output_type)
    kwargs: dict[str, Any] = {
        "request_serializer": request_cls.SerializeToString,
        "response_deserializer": response_cls.FromString,
    }
    full = f"/{service_name}/{name}"
    if method.server_streaming:
        stream = channel.unary_stream(full, **kwargs)(
            request_cls(), metadata=metadata, timeout=BOUND
        )
        try:
            return await stream.read()
        finally:
            stream.cancel()
    return await channel.unary_unary(full, **kwargs)(
        request_cls(), metadata=metadata, timeout=BOUND
    )


@pytest.fixture
async def authed(serve: ServeFactory) -> Served:
    served = await serve(auth_token=TOKEN)
    await served.client.create_worker()  # so a subscription from 0 has something to replay
    return served


def test_every_service_has_rpcs_to_check() -> None:
    assert {p.split("/")[0] for p in ALL_METHODS} == set(SERVICE_NAMES)
    assert len(ALL_METHODS) >= 15


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (("authorization", "Bearer wrong-token"),),
        (("authorization", f"Bearer {TOKEN}x"),),
        (("authorization", TOKEN),),  # no scheme
        (("authorization", f"Basic {TOKEN}"),),
    ],
    ids=["none", "wrong", "longer", "no-scheme", "basic"],
)
async def test_every_rpc_without_the_right_token_is_unauthenticated(
    authed: Served, metadata: tuple[tuple[str, str], ...] | None
) -> None:
    for path in ALL_METHODS:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call(authed.client.channel, path, metadata)
        assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED, path
        info = error_info(caught.value)
        assert (info.reason, info.domain) == ("UNAUTHENTICATED", "worker-runtime"), path
        if metadata:  # what the caller sent is never echoed back
            assert metadata[0][1] not in (caught.value.details() or ""), path


async def test_every_rpc_with_the_right_token_passes_auth(authed: Served) -> None:
    metadata = (("authorization", f"Bearer {TOKEN}"),)
    codes: dict[str, grpc.StatusCode] = {}
    for path in ALL_METHODS:
        try:
            await call(authed.client.channel, path, metadata)
            codes[path] = grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            codes[path] = exc.code()
    # empty requests may be invalid (no worker_id, ...), but never unauthorized
    allowed = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND}
    assert {p: c for p, c in codes.items() if c not in allowed} == {}
    assert codes["worker_runtime.v1.ManagementService/GetRuntime"] is grpc.StatusCode.OK
    assert codes["worker_runtime.v1.ObservationService/SubscribeEvents"] is grpc.StatusCode.OK


async def test_the_client_with_the_token_works_and_without_it_fails(authed: Served) -> None:
    client = authed.client
    info = await client.get_runtime()
    assert info.auth_required is True
    worker = (await client.create_worker()).worker
    accepted = await client.send_input(worker.worker_id, "secret handshake")
    run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert run.state is RunState.COMPLETED

    anonymous = await authed.new_client()
    with pytest.raises(Unauthenticated):
        await anonymous.get_worker(worker.worker_id)
    wrong = await authed.new_client(token="nope")
    with pytest.raises(Unauthenticated):
        await wrong.get_runtime()
    with pytest.raises(Unauthenticated):
        async for _ in wrong.subscribe(after_seq=0):
            pass


async def test_health_needs_no_token(authed: Served) -> None:
    health = health_pb2_grpc.HealthStub(authed.client.channel)
    for service in ("", *SERVICE_NAMES):
        resp = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=BOUND)
        assert resp.status == health_pb2.HealthCheckResponse.SERVING, service


async def test_reflection_needs_the_token(authed: Served) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(authed.client.channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    async def list_services(metadata: Any) -> set[str]:
        stream = stub.ServerReflectionInfo(iter([request]), metadata=metadata, timeout=BOUND)
        try:
            resp = await stream.read()
        finally:
            stream.cancel()
        return {s.name for s in resp.list_services_response.service}

    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await list_services(None)
    assert caught.value.code() is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.aio.AioRpcError) as wrong:
        await list_services((("authorization", "Bearer bad"),))
    assert wrong.value.code() is grpc.StatusCode.UNAUTHENTICATED
    names = await list_services((("authorization", f"Bearer {TOKEN}"),))
    assert set(SERVICE_NAMES) <= names


# --- secrets ----------------------------------------------------------------------------------

SECRET = "sk-secret-XYZ-7c1e9b2d4a"


async def test_provider_api_key_never_appears_anywhere(
    serve: ServeFactory, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("WR_TEST_KEY", SECRET)
    # The 401 body echoes the key it rejected, as some servers and proxies do.
    body = {"error": {"message": f"Incorrect API key provided: {SECRET}.", "type": "auth"}}
    reply = Reply.json(401, body)
    async with LoopbackServer(default=reply) as provider:
        config = {
            "providers": {
                "upstream": {
                    "kind": "openai_chat",
                    "base_url": provider.url,
                    "api_key_env": "WR_TEST_KEY",
                    "max_retries": 0,
                }
            },
            "profiles": {"remote": {"provider": "upstream", "model": "gpt-test"}},
        }
        served = await serve(config=config)
        client = served.client
        worker = (await client.create_worker(profile="remote")).worker
        accepted = await client.send_input(worker.worker_id, "hello")
        run = await client.wait_run(accepted.run.run_id, timeout=BOUND)

        # the provider got the key, in its Authorization header
        assert provider.requests, "the provider was called"
        assert provider.requests[0].headers["authorization"] == f"Bearer {SECRET}"
        assert run.state is RunState.FAILED
        assert run.error is not None
        assert "Incorrect API key provided" in run.error.message  # it says what went wrong...

        # ...and nothing anyone can read contains the key
        seen: list[str] = [repr(run), repr(await client.get_run(run.run_id))]
        seen.append(repr(await client.get_runtime()))
        seen.append(repr(await client.list_profiles()))
        seen.append(repr(await client.get_worker(worker.worker_id)))
        seen.append(repr(await client.get_transcript(worker.worker_id)))
        seen.append(repr(await client.list_diagnostics(page_size=1000)))
        seen.append(repr(await client.get_usage(worker.worker_id)))
        cursor = 0
        while True:
            page = await client.list_events(after_seq=cursor, page_size=1000)
            if not page.events:
                break
            seen.extend(str(e.raw) for e in page.events)
            seen.extend(repr(e) for e in page.events)
            cursor = page.next_after_seq
        assert any("run_finished" in s for s in seen)
    seen.extend(record.getMessage() for record in caplog.records)
    seen.append(caplog.text)
    leaks = [s for s in seen if SECRET in s or SECRET[3:] in s]
    assert not leaks, leaks[:3]


async def test_serve_never_prints_its_auth_token(spawn_server: SpawnServer) -> None:
    token = "srv-token-91d0c3a4b5e6f7"
    server = await spawn_server(
        "--auth-token-env", "WR_SERVE_TOKEN", "--log-level", "DEBUG", env={"WR_SERVE_TOKEN": token}
    )
    async with RuntimeClient(server.target, token=token) as good:
        info = await good.get_runtime()
        assert info.auth_required is True
        await good.create_worker()
    async with RuntimeClient(server.target, token=token[:-1]) as bad:
        with pytest.raises(Unauthenticated):
            await bad.get_runtime()
    assert await server.terminate() == 0
    out, err = server.stdout(), server.stderr()
    assert "auth       bearer token" in out
    assert token not in out
    assert token not in err
    assert token[:-1] not in out + err


async def test_a_token_pasted_into_a_request_field_stays_out_of_the_log(
    spawn_server: SpawnServer,
) -> None:
    # Before: PROFILE_NOT_FOUND's message echoes the profile, and the access log wrote it whole
    # (text and JSON formats alike), so a caller pasting the token into the wrong argument put
    # the runtime's secret into the logs.
    token = "srv-token-5c1e0a9b8d7f6e"
    for fmt in ("text", "json"):
        server = await spawn_server(
            "--auth-token-env", "WR_SERVE_TOKEN", "--log-level", "DEBUG", "--log-format", fmt,
            env={"WR_SERVE_TOKEN": token},
        )  # fmt: skip
        async with RuntimeClient(server.target, token=token) as client:
            with pytest.raises(ProfileNotFound):
                await client.create_worker(profile=token)
            with pytest.raises(ProfileNotFound):  # as JSON would escape it, too
                await client.create_worker(profile=f'x"{token}"')
        assert await server.terminate() == 0
        err = server.stderr()
        assert "PROFILE_NOT_FOUND" in err  # the access log did write the failures
        assert token not in err, err
