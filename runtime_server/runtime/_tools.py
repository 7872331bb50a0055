"""Built-in tools a profile may enable (``tools = [...]``), scoped to the worker's workspace.

File tools resolve every path inside the workspace root or one of its mounts and refuse
anything that escapes them (``..``, symlinks out); without a workspace they are not offered.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import engine
from runtime_server.model import Worker, Workspace
from runtime_server.runtime._profiles import Profile

MAX_READ_BYTES = 64 * 1024
MAX_LIST_ENTRIES = 200


def _roots(ws: Workspace) -> list[Path]:
    return [Path(ws.root).resolve(), *(Path(m.path).resolve() for m in ws.mounts)]


def _resolve(ws: Workspace, raw: Any) -> Path:
    if not isinstance(raw, str) or not raw:
        raise ValueError("path must be a non-empty string")
    base = Path(ws.root)
    path = (base / raw).resolve() if not raw.startswith("/") else Path(raw).resolve()
    for root in _roots(ws):
        if path == root or root in path.parents:
            return path
    raise PermissionError(f"{raw!r} is outside the workspace")


async def _clock(args: Mapping[str, Any]) -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _file_tools(ws: Workspace) -> list[engine.Tool]:
    async def read_file(args: Mapping[str, Any]) -> str:
        path = _resolve(ws, args.get("path"))

        def read() -> str:
            with path.open("rb") as f:
                data = f.read(MAX_READ_BYTES + 1)
            text = data[:MAX_READ_BYTES].decode("utf-8", errors="replace")
            return text + ("\n[truncated]" if len(data) > MAX_READ_BYTES else "")

        return await asyncio.to_thread(read)

    async def list_files(args: Mapping[str, Any]) -> str:
        path = _resolve(ws, args.get("path") or ".")

        def listing() -> str:
            names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
            more = len(names) - MAX_LIST_ENTRIES
            return "\n".join(names[:MAX_LIST_ENTRIES]) + (f"\n[{more} more]" if more > 0 else "")

        return await asyncio.to_thread(listing)

    path_schema = {
        "type": "object",
        "properties": {"path": {"type": "string", "description": "path inside the workspace"}},
        "required": ["path"],
    }
    return [
        engine.Tool(
            "read_file", "Read a UTF-8 text file from the workspace.", read_file, path_schema
        ),
        engine.Tool("list_files", "List a directory of the workspace.", list_files, path_schema),
    ]


BUILTIN_TOOLS = ("clock", "read_file", "list_files")


def builtin_tools(profile: Profile, worker: Worker) -> engine.ToolRegistry:
    """The registry for one run: the profile's enabled tools that apply to this worker."""
    available: dict[str, engine.Tool] = {
        "clock": engine.Tool(
            "clock", "The current UTC date and time (ISO 8601).", _clock, {"type": "object"}
        )
    }
    if worker.workspace is not None:
        available.update((t.name, t) for t in _file_tools(worker.workspace))
    return engine.ToolRegistry([available[name] for name in profile.tools if name in available])
