"""Every server error class through a real server: the client raises the class of the same name
with the same reason, metadata and the table's status code. Unexpected exceptions become a
generic INTERNAL (nothing leaked), are recorded as diagnostics, and leave the server healthy."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import runtime_client.errors as client_errors
from runtime_client import RuntimeClient, StatusCode
from runtime_server import errors as server_errors

if TYPE_CHECKING:
    from serving import Served

# The status codes the contract names; every other class takes its nearest ancestor's code.
SPECIAL = {
    "StoreFailure": StatusCode.INTERNAL,
    "RuntimeServiceError": StatusCode.INTERNAL,
}
FAMILY = {
    "InvalidArgument": StatusCode.INVALID_ARGUMENT,
    "NotFound": StatusCode.NOT_FOUND,
    "AlreadyExists": StatusCode.ALREADY_EXISTS,
    "FailedPrecondition": StatusCode.FAILED_PRECONDITION,
    "ResourceExhausted": StatusCode.RESOURCE_EXHAUSTED,
    "OutOfRange": StatusCode.OUT_OF_RANGE,
    "Unauthenticated": StatusCode.UNAUTHENTICATED,
    "PermissionDenied": StatusCode.PERMISSION_DENIED,
    "Unavailable": StatusCode.UNAVAILABLE,
}


def _tree(
    cls: type[server_errors.RuntimeServiceError],
) -> Iterator[type[server_errors.RuntimeServiceError]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _tree(sub)


ALL = list(_tree(server_errors.RuntimeServiceError))


def expected_code(cls: type[server_errors.RuntimeServiceError]) -> StatusCode:
    for klass in cls.__mro__:
        code = SPECIAL.get(klass.__name__) or FAMILY.get(klass.__name__)
        if code is not None:
            return code
    raise AssertionError(f"no expected code for {cls.__name__}")


def sample(cls: type[server_errors.RuntimeServiceError]) -> server_errors.RuntimeServiceError:
    """An instance of ``cls`` built from its signature (ints for int parameters)."""
    kwargs: dict[str, Any] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        is_int = param.annotation in ("int", int, "int | None")
        kwargs[name] = 7 if is_int else f"{name}-Ü-{cls.__name__}"
    if cls.__init__ is server_errors.RuntimeServiceError.__init__:
        kwargs["detail"] = "x"  # plain classes take free metadata
    return cls(**kwargs)


def client_class(
    cls: type[server_errors.RuntimeServiceError],
) -> type[client_errors.RuntimeServiceError]:
    """The client class for ``cls``: the one named like the class that defines its reason (a
    subclass that keeps its parent's reason, like the store's StoreOpenError, is its parent)."""
    owner = next(k for k in cls.__mro__ if "reason" in vars(k))
    if owner is server_errors.RuntimeServiceError:
        return client_errors.RuntimeServiceError
    found: type[client_errors.RuntimeServiceError] = getattr(client_errors, owner.__name__)
    return found


def test_the_tree_is_complete() -> None:
    names = {c.__name__ for c in ALL}
    # the contract's named reasons are all there, and each class has its own reason
    assert {"WorkerBusy", "QueueFull", "CursorExpired", "IdempotencyConflict"} <= names
    assert {"WorkspaceNotAllowed", "WorkspaceConflict", "CapabilityNotAllowed"} <= names
    assert server_errors.WorkspaceConflict.reason == "WORKSPACE_CONFLICT"
    assert expected_code(server_errors.WorkspaceConflict) is StatusCode.FAILED_PRECONDITION
    for denied in (server_errors.WorkspaceNotAllowed, server_errors.CapabilityNotAllowed):
        assert expected_code(denied) is StatusCode.PERMISSION_DENIED
    owners = [c for c in ALL if "reason" in vars(c)]
    assert len({c.reason for c in owners}) == len(owners)
    for cls in owners:
        if cls is not server_errors.RuntimeServiceError:
            assert hasattr(client_errors, cls.__name__), f"client lacks {cls.__name__}"
            assert getattr(client_errors, cls.__name__).reason == cls.reason


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
async def test_every_error_class_reaches_the_client_as_itself(
    served: Served, monkeypatch: pytest.MonkeyPatch, cls: type[server_errors.RuntimeServiceError]
) -> None:
    exc = sample(cls)

    def raiser(worker_id: str) -> NoReturn:
        raise exc

    monkeypatch.setattr(served.runtime, "get_worker", raiser)

    with pytest.raises(client_errors.RuntimeServiceError) as info:
        await served.client.get_worker(str(uuid.uuid4()))

    got = info.value
    want = client_class(cls)
    if want is client_errors.RuntimeServiceError:  # the abstract base: any client error will do
        assert isinstance(got, want)
    else:
        assert type(got) is want
    assert got.reason == cls.reason
    assert got.code is expected_code(cls)
    assert isinstance(got.__cause__, grpc.aio.AioRpcError)
    assert got.__cause__.code().name == expected_code(cls).value
    assert got.message == exc.message
    assert dict(got.metadata) == dict(exc.metadata)
    if "__init__" in vars(cls) and cls is not server_errors.RuntimeServiceError:
        # a leaf: every metadata key is a typed attribute, on both sides
        for key, text in exc.metadata.items():
            assert str(getattr(exc, key)) == text, key
            assert getattr(got, key) == getattr(exc, key), key


async def _serving(client: RuntimeClient) -> bool:
    stub = health_pb2_grpc.HealthStub(client.channel)
    resp = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
    return bool(resp.status == health_pb2.HealthCheckResponse.SERVING)


SECRET = "sk-secret-detail-42"


async def test_an_unexpected_exception_is_a_generic_internal_error(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = served.client
    w = (await client.create_worker()).worker

    def broken(worker_id: str) -> NoReturn:
        raise ZeroDivisionError(f"division by zero near {SECRET}")

    monkeypatch.setattr(served.runtime, "get_worker", broken)

    with pytest.raises(client_errors.InternalError) as info:
        await client.get_worker(w.worker_id)

    got = info.value
    assert got.code is StatusCode.INTERNAL
    assert got.reason == "INTERNAL"
    assert isinstance(got.__cause__, grpc.aio.AioRpcError)
    wire_text = f"{got.message} {got.__cause__.details()} {got.__cause__.debug_error_string()}"
    for leak in (SECRET, "ZeroDivisionError", "Traceback", "_servicers.py"):
        assert leak not in wire_text
    assert dict(got.metadata) == {}
    diagnostics = (await client.list_diagnostics()).items
    assert diagnostics[0].code == "RPC_INTERNAL_ERROR"
    assert diagnostics[0].level.value == "ERROR"
    monkeypatch.undo()
    assert await _serving(client)
    assert (await client.get_worker(w.worker_id)).worker_id == w.worker_id


async def test_an_unexpected_exception_in_the_event_stream_is_internal(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = served.client

    def broken(**kwargs: Any) -> NoReturn:
        raise ZeroDivisionError(f"boom {SECRET}")

    monkeypatch.setattr(served.runtime, "subscribe", broken)

    with pytest.raises(client_errors.InternalError) as info:
        await collect(client.subscribe(resume=False), [])

    got = info.value
    assert got.code is StatusCode.INTERNAL
    assert SECRET not in got.message
    assert "ZeroDivisionError" not in got.message
    assert (await client.list_diagnostics()).items[0].code == "RPC_INTERNAL_ERROR"
    monkeypatch.undo()
    assert await _serving(client)


async def test_a_runtime_error_mid_stream_reaches_the_subscriber(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Errors raised while streaming (not only when it opens) go through the same table."""
    client = served.client
    await client.create_worker()
    real_subscribe = served.runtime.subscribe

    class FailingAfterOne:
        def __init__(self, inner: Any) -> None:
            self._inner = inner
            self.closed = False
            self.last_seq = 0
            self.buffered = 0  # nothing buffered (the batch stream's coalescing reads it)
            self._served = 0

        async def next(self, timeout: float | None) -> Any:  # noqa: ASYNC109 - its signature
            self._served += 1
            if self._served > 1:
                raise server_errors.StoreFailure("the disk is gone", path="/data")
            return await self._inner.next(timeout)

        def drain(self, max_events: int, **kwargs: Any) -> list[Any]:
            return []  # the batch stream's "whatever else is ready": nothing

        def close(self) -> None:
            self._inner.close()

    monkeypatch.setattr(
        served.runtime, "subscribe", lambda **kw: FailingAfterOne(real_subscribe(**kw))
    )

    seen: list[Any] = []
    with pytest.raises(client_errors.StoreFailure) as info:
        await collect(client.subscribe(resume=False), seen)
    assert len(seen) == 1
    assert info.value.code is StatusCode.INTERNAL
    assert info.value.metadata == {"path": "/data"}


async def collect(events: AsyncIterator[Any], into: list[Any]) -> None:
    async for event in events:
        into.append(event)
