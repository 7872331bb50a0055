"""EmbeddedRuntime has exactly RuntimeClient's public method set, each with the same signature
(parameter names, kinds, defaults, annotations and return annotation) and the same async shape:
code typed against one (a RuntimeHandle) runs against the other. Constructors (the client's
``from_channel``, the handle's ``open``) and properties are not calls on the shared API."""

from __future__ import annotations

import inspect
from typing import Any

from runtime_client import RuntimeClient
from runtime_server.embedded import EmbeddedRuntime

# The interface agreed for RuntimeHandle (REGISTRY_API.md): both must have exactly these.
HANDLE_METHODS = {
    "get_runtime", "list_diagnostics", "list_profiles", "list_workspace_claims", "create_worker",
    "get_worker", "list_workers", "iter_workers", "stop_worker", "delete_worker", "send_input",
    "cancel_run", "get_run", "wait_run", "get_transcript", "iter_transcript", "list_events",
    "get_usage", "subscribe", "close",
    # ConfigService (issue 13)
    "put_bundle", "get_bundle", "list_bundles", "delete_bundle",
}  # fmt: skip


def _methods(cls: type) -> dict[str, Any]:
    # plain functions only: a classmethod read from the class is a bound method, a property is not
    # a function
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and inspect.isfunction(member)
    }


def _shape(fn: Any) -> str:
    if inspect.isasyncgenfunction(fn):
        return "async generator"
    if inspect.iscoroutinefunction(fn):
        return "coroutine"
    return "function"


def test_the_method_sets_are_equal() -> None:
    assert set(_methods(RuntimeClient)) == HANDLE_METHODS
    assert set(_methods(EmbeddedRuntime)) == HANDLE_METHODS


def test_every_signature_is_the_same() -> None:
    client, embedded = _methods(RuntimeClient), _methods(EmbeddedRuntime)
    for name in sorted(HANDLE_METHODS):
        assert inspect.signature(embedded[name]) == inspect.signature(client[name]), name
        assert _shape(embedded[name]) == _shape(client[name]), name


def test_the_signature_comparison_can_fail() -> None:
    """A parameter renamed or a default changed is seen (the check above is not vacuous)."""

    async def get_worker(self: Any, worker: str) -> Any:
        return None

    assert inspect.signature(get_worker) != inspect.signature(RuntimeClient.get_worker)


def test_every_handle_method_is_documented_or_self_evident() -> None:
    # the handle's docstring and module docstring say what differs; each method keeps the
    # client's docstring where the client has one
    client, embedded = _methods(RuntimeClient), _methods(EmbeddedRuntime)
    for name in HANDLE_METHODS:
        if (client[name].__doc__ or "").strip():
            assert (embedded[name].__doc__ or "").strip(), name
