"""engine.frozen: the records of the engine and of the Runtime's model are built by an ``__init__``
that writes each slot directly (not ``object.__setattr__`` per field). It must be the
dataclass's own ``__init__`` in all but cost: for every record class of both modules, the same
parameters (names, kinds, order, defaults), and objects equal to what the dataclass-generated
``__init__`` builds — positional and keyword calls, defaults and default factories (a fresh
object per call) included — still frozen; classes it cannot reproduce are left alone."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

import engine
import runtime_server.model as model
from engine.frozen import slot_init


def _records(namespace: Any, module: str) -> list[type[Any]]:
    return [
        v
        for v in vars(namespace).values()
        if isinstance(v, type) and dataclasses.is_dataclass(v) and v.__module__ == module
    ]


# the model's records, and the engine's as its package exports them
RECORDS = _records(model, model.__name__) + _records(engine, "engine._types")


def _reference(cls: type[Any]) -> type[Any]:
    """The same class as dataclasses alone makes it (its generated ``__init__``)."""
    ns = {f.name: f for f in dataclasses.fields(cls)}
    annotations = {name: f.type for name, f in ns.items()}
    body: dict[str, Any] = {"__annotations__": annotations, "__module__": cls.__module__}
    for name, f in ns.items():
        kw: dict[str, Any] = {"kw_only": f.kw_only, "compare": f.compare, "repr": f.repr}
        if f.default is not dataclasses.MISSING:
            kw["default"] = f.default
        if f.default_factory is not dataclasses.MISSING:
            kw["default_factory"] = f.default_factory
        body[name] = dataclasses.field(**kw)
    return dataclasses.dataclass(frozen=True, slots=True)(type(cls.__name__, (), body))


def _sample(f: dataclasses.Field[Any]) -> Any:
    return f"value-of-{f.name}"


def test_the_records_of_both_modules_were_given_the_slot_init() -> None:
    hot: set[type[Any]] = {
        model.Event,
        model.Run,
        model.Worker,
        engine.Usage,
        engine.TextDelta,
        engine.Message,
    }
    assert hot <= set(RECORDS)
    for cls in hot:
        assert cls.__init__.__code__.co_filename == "<string>"
        assert "_set_" in " ".join(cls.__init__.__code__.co_names)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__qualname__)
def test_same_parameters_and_same_objects_as_the_dataclass_init(cls: type[Any]) -> None:
    ref = _reference(cls)
    mine = inspect.signature(cls.__init__).parameters
    theirs = inspect.signature(ref.__init__).parameters
    assert [(p.name, p.kind) for p in mine.values()] == [(p.name, p.kind) for p in theirs.values()]
    fields = dataclasses.fields(cls)
    for f in fields:
        if f.default is not dataclasses.MISSING:
            assert mine[f.name].default is f.default
    # every field given (keyword) / only the required ones (defaults, factories)
    full = {f.name: _sample(f) for f in fields}
    required = {
        f.name: _sample(f)
        for f in fields
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    for kwargs in (full, required):
        got, want = cls(**kwargs), ref(**kwargs)
        for f in fields:
            assert getattr(got, f.name) == getattr(want, f.name), f.name
        assert repr(got).partition("(")[2] == repr(want).partition("(")[2]
    positional = [full[f.name] for f in fields if not f.kw_only]
    keywords = {f.name: full[f.name] for f in fields if f.kw_only}
    assert cls(*positional, **keywords) == cls(**full)
    made = cls(**required)
    for f in fields:
        if f.default_factory is not dataclasses.MISSING:  # a fresh object per call
            assert getattr(made, f.name) == f.default_factory()
            assert getattr(cls(**required), f.name) is not getattr(made, f.name)
    if fields:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(made, fields[0].name, "changed")
    if positional:
        with pytest.raises(TypeError):
            cls(*positional, *positional, **keywords)  # too many arguments, as before


def test_a_class_it_cannot_reproduce_is_left_alone() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Checked:
        n: int

        def __post_init__(self) -> None:
            if self.n < 0:
                raise ValueError("negative")

    @dataclasses.dataclass(frozen=True)  # no slots: no member descriptors to write
    class Plain:
        n: int

    @dataclasses.dataclass(slots=True)  # not frozen: its own __init__ is already direct
    class Mutable:
        n: int

    for cls in (Checked, Plain, Mutable):
        before = cls.__init__
        assert slot_init(cls) is cls
        assert cls.__init__ is before
    with pytest.raises(ValueError, match="negative"):
        Checked(-1)
