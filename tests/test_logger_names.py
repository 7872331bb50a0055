"""Loggers are named after their module (``logging.getLogger(__name__)``), so an operator can tune
any part of the product by its dotted name (``runtime_server.runtime``, ``engine``) and a log line
says where it came from. Read from the source of every product package."""

from __future__ import annotations

import ast
from pathlib import Path

from source_files import python_files

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("engine", "runtime_server", "runtime_client")

# Deliberate exceptions, each with its reason:
NAMED_CHANNELS = {
    # the access log: a channel operators switch by name (README "Operations"), like uvicorn.access
    "runtime_server/grpc/_observe.py": "runtime_server.access",
}


def _named_loggers(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every ``getLogger("literal")`` call at module level or below."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            == "getLogger"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            found.append((node.lineno, str(node.args[0].value)))
    return found


def test_loggers_are_named_after_their_module() -> None:
    offenders = []
    seen = 0
    for package in PRODUCT:
        for path in python_files(ROOT / package):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("runtime_client/api/"):
                continue
            for line, name in _named_loggers(path):
                seen += 1
                if NAMED_CHANNELS.get(rel) == name:
                    continue
                offenders.append(f"{rel}:{line} getLogger({name!r})")
    assert offenders == []
    assert seen >= 1  # the check finds literal names (the access log's, at least)
