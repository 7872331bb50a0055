"""The error tree is public API (issue 10 item 6): one base, ``RuntimeServiceError``, on both sides;
the same families on both sides; ``RuntimeDraining`` is an ``Unavailable`` (it travels as
UNAVAILABLE), never a ``FailedPrecondition``; every leaf has typed constructor attributes from
which its metadata is derived, and they survive pickling; one ErrorInfo domain."""

from __future__ import annotations

import inspect
import pickle
from collections.abc import Iterator
from typing import TYPE_CHECKING

import grpc
import pytest
from serving import error_info

import runtime_client
import runtime_client.errors as client_errors
from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import catalog_service_pb2_grpc as cgrpc
from runtime_server import errors as server_errors
from runtime_server import wire_errors
from runtime_server.grpc import ERROR_DOMAIN as SERVER_DOMAIN

if TYPE_CHECKING:
    from serving import Served


def _tree(cls: type[Exception]) -> Iterator[type[Exception]]:
    yield cls
    for sub in cls.__subclasses__():
        yield from _tree(sub)


SERVER = [
    c
    for c in _tree(server_errors.RuntimeServiceError)
    if c.__module__.startswith("runtime_server.errors")
]
CLIENT = list(_tree(client_errors.RuntimeServiceError))
CLIENT_LEAVES = [c for c in CLIENT[1:] if "__init__" in vars(c)]


def test_one_base_name_and_no_old_names() -> None:
    assert runtime_client.RuntimeServiceError is client_errors.RuntimeServiceError
    for gone in ("RuntimeClientError", "RuntimeError_"):
        assert not hasattr(client_errors, gone)
        assert not hasattr(runtime_client, gone)
        assert not hasattr(server_errors, gone)


def test_the_families_are_the_same_on_both_sides() -> None:
    for cls in SERVER:
        if cls is server_errors.RuntimeServiceError:
            continue
        mine = getattr(client_errors, cls.__name__)
        parent = cls.__mro__[1]
        assert mine.__mro__[1] is getattr(client_errors, parent.__name__), cls.__name__


def test_runtime_draining_is_unavailable_not_failed_precondition() -> None:
    for side in (server_errors, client_errors):
        assert issubclass(side.RuntimeDraining, side.Unavailable)
        assert not issubclass(side.RuntimeDraining, side.FailedPrecondition)
    assert wire_errors.status_name(server_errors.RuntimeDraining(3)) == "UNAVAILABLE"
    with pytest.raises(client_errors.Unavailable):
        raise client_errors.RuntimeDraining(last_seq=3)


@pytest.mark.parametrize("cls", CLIENT_LEAVES, ids=lambda c: c.__name__)
def test_every_client_leaf_derives_its_metadata_from_typed_attributes(
    cls: type[client_errors.RuntimeServiceError],
) -> None:
    kwargs: dict[str, object] = {}
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if param.kind is param.KEYWORD_ONLY and name not in ("reason", "code", "metadata"):
            kwargs[name] = 41 if param.annotation in ("int", int) else f"{name}-x"
    assert kwargs, "a leaf has typed attributes"
    err = cls(**kwargs)  # type: ignore[arg-type]
    for name, value in kwargs.items():
        assert getattr(err, name) == value
    assert dict(err.metadata) == {k: str(v) for k, v in kwargs.items()}
    assert err.message  # a default message naming them
    again = pickle.loads(pickle.dumps(err))
    assert type(again) is cls
    assert (again.message, again.reason, again.code) == (err.message, err.reason, err.code)
    assert all(getattr(again, k) == v for k, v in kwargs.items())
    # and a received error reads them back from its metadata
    received = client_errors.from_status(err.code, err.message, err.reason, err.metadata)
    assert type(received) is cls
    assert all(getattr(received, k) == v for k, v in kwargs.items())


def test_every_server_leaf_has_typed_attributes_for_its_metadata() -> None:
    for cls in SERVER[1:]:
        if "__init__" not in vars(cls):
            continue
        client = getattr(client_errors, cls.__name__)
        server_params = {
            n
            for n, p in inspect.signature(cls.__init__).parameters.items()
            if n not in ("self", "why", "message") and p.kind is not p.VAR_KEYWORD
        }
        client_params = set(inspect.signature(client.__init__).parameters) - {
            "self", "message", "reason", "code", "metadata",
        }  # fmt: skip
        # a server parameter is a client attribute (``holder`` is sent as holder_worker_id)
        assert {
            "holder_worker_id" if n == "holder" else n for n in server_params
        } <= client_params, cls


async def test_one_error_domain(served: Served) -> None:
    assert SERVER_DOMAIN is client_errors.ERROR_DOMAIN
    # and it is the domain the server stamps on the wire, read from a raw call
    stub = cgrpc.CatalogServiceStub(served.client.channel)
    unknown = "0190a0a0-0000-7000-8000-000000000000"
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetWorker(cpb.GetWorkerRequest(worker_id=unknown))
    assert error_info(caught.value).domain == client_errors.ERROR_DOMAIN
