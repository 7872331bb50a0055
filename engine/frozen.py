"""``slot_init(cls)``: a frozen, slotted dataclass's ``__init__``, without its per-field cost.

The ``__init__`` that ``@dataclass(frozen=True)`` generates assigns every field with
``object.__setattr__(self, name, value)`` (a frozen class refuses ``self.name = value``): a global
lookup, an attribute lookup and a generic set-attribute call per field. A run builds ~80 such
records (18 events, their payloads, Usage, Run, Worker, transcript entries, ...), and those
``__init__`` calls were ~7% of the Runtime's own CPU per run. With ``slots=True`` every field is a
member descriptor on the class; writing it through that descriptor's ``__set__`` does the same
store directly.

:func:`slot_init` replaces the generated ``__init__`` with one that does exactly that, generated
the way dataclasses generates its own: the same parameters in the same order (positional or
keyword, keyword-only fields after ``*``), the same defaults and default factories, so every call
that worked before builds the same object (same fields, equality, hash and repr; the class stays
frozen: ``__setattr__`` still raises). Classes it cannot reproduce exactly — not a frozen slotted
dataclass, a ``__post_init__``, an ``init=False`` field or an ``InitVar`` — are left as they are.
:func:`slot_init_all` applies it to every dataclass a module defines.

Measured (callgrind, a 10-word echo run through the in-process Runtime): see the README's
performance section.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

T = TypeVar("T")

_MISSING = dataclasses.MISSING


class _Factory:
    """The default of a parameter whose field has a default factory (dataclasses' own sentinel
    is private): a call that leaves it out gets ``factory()``."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<factory>"


_FACTORY = _Factory()


def _eligible(cls: type) -> bool:
    params = getattr(cls, "__dataclass_params__", None)
    if params is None or not params.frozen or "__slots__" not in cls.__dict__:
        return False
    if hasattr(cls, "__post_init__"):
        return False
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields if f.init]
    if len(names) != len(fields):
        return False
    # the generated __init__ takes exactly the fields, in order (an InitVar would be extra)
    original = cls.__dict__.get("__init__")
    return original is not None and list(inspect.signature(original).parameters)[1:] == names


def slot_init(cls: type[T]) -> type[T]:
    """Give ``cls`` the faster ``__init__`` (see the module docstring); returns ``cls``."""
    if not _eligible(cls):
        return cls
    fields = dataclasses.fields(cls)  # type: ignore[arg-type]
    namespace: dict[str, Any] = {"_FACTORY": _FACTORY}
    positional: list[str] = []
    keyword: list[str] = []
    body: list[str] = []
    for f in fields:
        name = f.name
        namespace[f"_set_{name}"] = getattr(cls, name).__set__  # the slot's member descriptor
        param = name
        if f.default is not _MISSING:
            namespace[f"_default_{name}"] = f.default
            param = f"{name}=_default_{name}"
        elif f.default_factory is not _MISSING:
            namespace[f"_factory_{name}"] = f.default_factory
            param = f"{name}=_FACTORY"
            body.append(f"    if {name} is _FACTORY:\n        {name} = _factory_{name}()\n")
        (keyword if f.kw_only else positional).append(param)
        body.append(f"    _set_{name}(self, {name})\n")
    params = ["self", *positional]
    if keyword:
        params += ["*", *keyword]
    source = f"def __init__({', '.join(params)}):\n" + ("".join(body) or "    pass\n")
    exec(source, namespace)  # (generated from the class's own fields, as dataclasses does)
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = cls.__dict__["__init__"].__doc__
    setattr(cls, "__init__", init)  # noqa: B010 - (mypy refuses assigning a method)
    return cls


def slot_init_all(namespace: Mapping[str, Any]) -> None:
    """:func:`slot_init` for every dataclass defined in the module whose ``globals()`` this is."""
    module = namespace.get("__name__")
    for value in list(namespace.values()):
        if isinstance(value, type) and value.__module__ == module:
            slot_init(value)
