"""``evolve(obj, **changes)``: :func:`dataclasses.replace` for the frozen records a run rewrites
several times (``Run``, ``Worker``), at a third of its cost.

``dataclasses.replace`` walks the class's field objects and checks each one's kind on every call
(~5 µs for a ``Run``, ~6 µs for a ``Worker``; six calls a run). Here a class's field names are
read once: the record's values come out in one ``attrgetter`` call, the changed ones are put in
place by index, and the class is called positionally — the same constructor, so the result is the
one ``replace`` gives. Only for dataclasses whose fields are all ``init`` fields (checked when a
class is first seen: anything else falls back to ``replace``); an unknown field name raises
``TypeError`` as ``replace`` does.
"""

from __future__ import annotations

import dataclasses
from operator import attrgetter
from typing import Any, TypeVar

T = TypeVar("T")

# class -> (every field's value as a tuple, name -> position); None: use dataclasses.replace
_SPECS: dict[type, tuple[Any, dict[str, int]] | None] = {}


def _spec(cls: type) -> tuple[Any, dict[str, int]] | None:
    fields = dataclasses.fields(cls)
    if not fields or any(not f.init for f in fields):
        spec = None
    else:
        names = [f.name for f in fields]
        get = attrgetter(*names) if len(names) > 1 else (lambda o, g=attrgetter(names[0]): (g(o),))
        spec = (get, {name: i for i, name in enumerate(names)})
    _SPECS[cls] = spec
    return spec


def evolve(obj: T, /, **changes: Any) -> T:
    """A copy of the dataclass instance ``obj`` with ``changes`` (``dataclasses.replace``)."""
    cls = obj.__class__
    spec = _SPECS[cls] if cls in _SPECS else _spec(cls)
    if spec is None:
        return dataclasses.replace(obj, **changes)  # type: ignore[type-var]
    get, index = spec
    values = list(get(obj))
    try:
        for name, value in changes.items():
            values[index[name]] = value
    except KeyError as exc:
        raise TypeError(f"{cls.__name__} has no field {exc.args[0]!r}") from None
    return cls(*values)
