"""The gRPC edge has one pair of wrappers: every RPC of every servicer goes through ``unary`` or
``stream`` (runtime_server.grpc._servicers), and those two are the only places that turn an
exception into a gRPC status — a servicer body just raises. (How each error class and a bug look
on the wire is proven through a real server in test_errors.py.)"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from runtime_server.grpc import servicers

SERVICERS = (
    servicers.ManagementServicer,
    servicers.CatalogServicer,
    servicers.InteractionServicer,
    servicers.ObservationServicer,
)


def _rpc_names(cls: type) -> list[str]:
    """The RPCs: the methods of the generated base class (``...Servicer``) the servicer fills."""
    base = next(b for b in cls.__mro__[1:] if b.__module__.endswith("_pb2_grpc"))
    return [n for n, v in vars(base).items() if callable(v) and not n.startswith("_")]


def test_every_rpc_goes_through_one_of_the_two_wrappers() -> None:
    seen = 0
    for cls in SERVICERS:
        for name in _rpc_names(cls):
            method = getattr(cls, name)
            assert method.__qualname__ != f"{cls.__bases__[-1].__qualname__}.{name}", (
                f"{cls.__name__}.{name} is not implemented"
            )
            wrapper = method.__code__.co_name
            assert wrapper in ("handle_unary", "handle_stream"), f"{cls.__name__}.{name}"
            streaming = inspect.isasyncgenfunction(method.__wrapped__)
            assert wrapper == ("handle_stream" if streaming else "handle_unary"), name
            seen += 1
    assert seen >= 16  # the four services' RPCs


def test_only_the_wrappers_map_errors_to_status() -> None:
    """``abort`` (the error table) and ``context.abort`` are called in ``_abort_with`` only, and
    ``_abort_with`` only from the two wrappers: no copied try block maps errors elsewhere."""
    tree = ast.parse(Path(servicers.__file__).read_text())
    callers: dict[str, set[str]] = {}
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Call):
                f = node.func
                name = (
                    f.id
                    if isinstance(f, ast.Name)
                    else f.attr
                    if isinstance(f, ast.Attribute)
                    else ""
                )
                if name in ("abort", "_abort_with", "status_details"):
                    callers.setdefault(name, set()).add(fn.name)
    # (a wrapper's inner function is walked inside its decorator function too)
    assert callers["_abort_with"] <= {"unary", "handle_unary", "stream", "handle_stream"}
    assert callers["abort"] == {"_abort_with"}
    assert callers["status_details"] == {"_abort_with"}
    with_excepts = {
        fn.name
        for fn in ast.walk(tree)
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        and any(isinstance(n, ast.ExceptHandler) for n in ast.walk(fn))
    }
    assert with_excepts <= {"unary", "handle_unary", "stream", "handle_stream"}
