"""The layering rules of ARCHITECTURE.md, checked: embedding the Runtime must not drag the network
stack in, the client never depends on the server or the engine, and the generated protobuf code is
imported only at the two gRPC edges."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest
from source_files import python_files

ROOT = Path(__file__).resolve().parents[1]
GENERATED = "runtime_client.api"


def loaded_after_import(*modules: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after importing ``modules``."""
    code = (
        "import importlib, json, sys\n"
        f"for name in {list(modules)!r}:\n"
        "    importlib.import_module(name)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return set(json.loads(proc.stdout))


def under(loaded: set[str], *prefixes: str) -> list[str]:
    return sorted(m for m in loaded if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize(
    "modules",
    [
        ("runtime_server", "runtime_server.runtime", "runtime_server.store", "engine"),
        ("runtime_server.cli",),  # `serve` imports grpc only when it runs
    ],
    ids=["core", "cli"],
)
def test_the_runtime_core_imports_no_grpc_and_no_protobuf(modules: tuple[str, ...]) -> None:
    loaded = loaded_after_import(*modules)
    assert set(modules) <= loaded
    assert under(loaded, "grpc", "google.protobuf", "google.rpc", GENERATED) == []


def test_runtime_client_never_imports_the_server_or_the_engine() -> None:
    loaded = loaded_after_import("runtime_client", "runtime_client.errors")
    assert "grpc" in loaded  # it is the gRPC client, so this check has teeth
    assert under(loaded, "runtime_server", "engine") == []


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in ``path``, relative ones resolved."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    return _imports_in(path.read_text(encoding="utf-8"), package, str(path))


def _imports_in(source: str, package: str, filename: str = "<source>") -> list[tuple[int, str]]:
    """:func:`_imports` of ``source``, a module of ``package``: every node of the tree, so an
    import inside a function (a lazy import) counts as much as one at the top."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            found.extend((node.lineno, f"{base}.{alias.name}") for alias in node.names)
    return found


def _sources(*packages: str) -> list[Path]:
    files = [p for pkg in packages for p in python_files(ROOT / pkg)]
    return [
        p for p in files if not p.relative_to(ROOT).as_posix().startswith("runtime_client/api/")
    ]


def test_generated_code_is_imported_only_at_the_grpc_edges() -> None:
    allowed = ("runtime_client/", "runtime_server/grpc/")
    users: set[str] = set()
    offenders: list[str] = []
    for path in _sources("engine", "runtime_server", "runtime_client"):
        rel = path.relative_to(ROOT).as_posix()
        for line, module in _imports(path):
            if module == GENERATED or module.startswith(GENERATED + "."):
                users.add(rel)
                if not rel.startswith(allowed):
                    offenders.append(f"{rel}:{line} imports {module}")
    assert offenders == []
    assert any(u.startswith("runtime_server/grpc/") for u in users)  # the check sees real imports
    assert any(u.startswith("runtime_client/") for u in users)


def test_static_imports_respect_the_layers() -> None:
    """The same rules read from the source, so a lazy import inside a function is caught too."""
    offenders: list[str] = []
    rules = {
        "engine": ("grpc", "google.protobuf", "google.rpc", "runtime_server", "runtime_client"),
        "runtime_server/runtime": ("grpc", "google.protobuf", "google.rpc", "runtime_client"),
        "runtime_server/store": ("grpc", "google.protobuf", "google.rpc", "runtime_client"),
        "runtime_client": ("runtime_server", "engine"),
    }
    for package, banned in rules.items():
        for path in _sources(package):
            rel = path.relative_to(ROOT).as_posix()
            for line, module in _imports(path):
                if any(module == b or module.startswith(b + ".") for b in banned):
                    offenders.append(f"{rel}:{line} imports {module}")
    assert offenders == []


def _top_level_packages() -> list[str]:
    """Every top-level directory of the repo that holds Python code, discovered rather than listed,
    so a package added later (``backend``, say) is checked from its first commit."""
    skipped = {"build", "dist", "node_modules"}
    return sorted(
        d.name
        for d in ROOT.iterdir()
        if d.is_dir()
        and not d.name.startswith((".", "_"))
        and d.name not in skipped
        and not d.name.endswith(".egg-info")
        and python_files(d)
    )


def _package_of(path: Path) -> str:
    """The package a module belongs to: its directory, dotted (``a/b/c.py`` and
    ``a/b/__init__.py`` are both in ``a.b``)."""
    return ".".join(path.relative_to(ROOT).parts[:-1])


def _private_part(module: str) -> tuple[str, str] | None:
    """For ``a.b._c.d`` (a private module, or a private name imported from a module): the package
    that holds the private part and the private part, ``("a.b", "a.b._c")``. When the private part
    is a name in a module (``a.b.m._f``, ``a/b/m.py``), the holder is that module's package
    (``a.b``): a module may use a private helper of its own package's modules. ``None`` when every
    part is public (dunders such as ``__future__`` are not private)."""
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            holder = parts[:i]
            if holder and (ROOT.joinpath(*holder[:-1]) / f"{holder[-1]}.py").is_file():
                holder = holder[:-1]
            return ".".join(holder), ".".join(parts[: i + 1])
    return None


def test_no_module_imports_another_packages_private_module() -> None:
    """Rule: a private module (``_x``, or a private name) may be imported only by modules of the
    package that holds it: ``runtime_server/runtime/_a.py`` may import
    ``runtime_server.runtime._b``; ``runtime_server/grpc/x.py``, ``runtime_server/cli.py``, a test
    or a benchmark may not. Everything else goes through the package's public ``__init__`` (or a
    public module such as ``engine.testing``). Read from the source, so lazy imports inside
    functions count, over every top-level package of the repo."""
    packages = _top_level_packages()
    assert {"engine", "runtime_server", "runtime_client", "bench", "tests", "scripts"} <= set(
        packages
    )
    offenders: set[str] = set()
    checked = 0
    for path in _sources(*packages):
        rel = path.relative_to(ROOT).as_posix()
        own = _package_of(path)
        for line, module in _imports(path):
            private = _private_part(module)
            if private is None:
                continue
            checked += 1
            holder, name = private
            if holder != own:
                offenders.add(f"{rel}:{line} imports {name}")
    assert sorted(offenders) == []
    assert checked > 50  # the check sees the packages' own private imports


def test_the_private_import_rule_tells_own_package_from_another() -> None:
    """The rule's two cases on the example of its docstring, and the import forms it reads."""
    src = ROOT / "runtime_server" / "runtime" / "_a.py"
    assert _package_of(src) == "runtime_server.runtime"
    b = "runtime_server.runtime._b"
    assert _private_part(f"{b}.name") == ("runtime_server.runtime", b)
    assert _package_of(ROOT / "runtime_server" / "grpc" / "x.py") != "runtime_server.runtime"
    # a private name of a module: held by the module's package (runtime_server), so a test may
    # not import it, while runtime_server/x.py could
    assert _private_part("runtime_server.cli._serve_options") == (
        "runtime_server",
        "runtime_server.cli._serve_options",
    )
    assert _private_part("__future__.annotations") is None
    assert _private_part("runtime_client.api.types_pb2") is None

    source = (
        "from __future__ import annotations\n"
        "from ._b import x\n"
        "def later():\n"
        "    from runtime_server.store import _codec\n"
        "    import engine._scripted\n"
    )
    private = {
        _private_part(module) for _, module in _imports_in(source, "runtime_server.runtime")
    } - {None}
    assert private == {
        ("runtime_server.runtime", "runtime_server.runtime._b"),  # relative: its own package
        ("runtime_server.store", "runtime_server.store._codec"),  # lazy, another package's
        ("engine", "engine._scripted"),
    }
