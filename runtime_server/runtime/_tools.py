"""Built-in tools a profile may enable (``tools = [...]``), scoped to the worker's workspace.

Every file tool reaches files only through :mod:`runtime_server.runtime._fs` (directory file
descriptors, ``O_NOFOLLOW``, regular files only), never through a checked path string, and every
refusal is an error *result* the model sees (``FsError``), never a failed run, and never a message
naming a host path outside the workspace. Without a workspace the file tools are not offered.

Blocking file work runs in a worker thread (``asyncio.to_thread``); it cannot block on a FIFO or a
device (they are refused before being opened), so the thread always finishes promptly and a
shutdown never waits on it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import engine
from runtime_server.model import Worker
from runtime_server.runtime import _fs
from runtime_server.runtime._fs import FsError
from runtime_server.runtime._profiles import Profile
from runtime_server.runtime._wsaccess import Anchor, WorkspaceAccess

MAX_LIST_ENTRIES = 200  # names list_files returns (sorted)
MAX_SCANNED_ENTRIES = 10_000  # entries it reads from one directory

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class FileLimits:
    """The file tools' size caps (reported by GetRuntime as limits ``max_file_*``)."""

    read_bytes: int = 64 * 1024  # text one read_file call returns
    scan_bytes: int = 16 * 1024 * 1024  # how far into a file read_file may look
    write_bytes: int = 1024 * 1024  # content write_file takes, and files edit_file rewrites


async def _clock(args: Mapping[str, Any]) -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _int_arg(args: Mapping[str, Any], name: str, default: int, minimum: int) -> int:
    value = args.get(name, default)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise FsError(f"{name} must be an integer >= {minimum}")
    return value


def _str_arg(args: Mapping[str, Any], name: str) -> str:
    value = args.get(name)
    if not isinstance(value, str):
        raise FsError(f"{name} must be a string")
    return value


class FileTools:
    """The file tools of one worker's workspace."""

    def __init__(self, access: WorkspaceAccess, limits: FileLimits) -> None:
        self._access = access
        self._limits = limits

    async def _run(self, fn: Callable[[], T]) -> T:
        try:
            return await asyncio.to_thread(fn)
        except FsError:
            raise
        except OSError as exc:  # never str(exc): it carries the host path
            raise _fs.os_error(exc) from None

    def _with(self, raw: object, fn: Callable[[int, Anchor, _fs.Resolved], T]) -> T:
        anchor, parts = self._access.locate(raw)
        fd = _fs.open_anchor(anchor.real)
        try:
            with _fs.resolved(fd, parts) as r:
                return fn(fd, anchor, r)
        finally:
            os.close(fd)

    # --- read_file ---

    async def read_file(self, args: Mapping[str, Any]) -> str:
        offset = _int_arg(args, "offset", 1, 1)
        limit = _int_arg(args, "limit", 0, 0)  # 0 = as many lines as fit
        return await self._run(
            lambda: self._with(args.get("path"), lambda _a, _b, r: self._read(r, offset, limit))
        )

    def _read(self, r: _fs.Resolved, offset: int, limit: int) -> str:
        """Lines ``offset``.. of the file, at most ``limit`` lines and ``read_bytes`` bytes. Lines
        are read in pieces of at most ``read_bytes`` (never a whole huge line into memory); a line
        longer than that is returned cut, with a note."""
        lim = self._limits
        fd = _fs.open_read(r)
        out: list[bytes] = []
        size = scanned = 0
        line_no = 1  # the line the next piece belongs to
        more = ""
        tail = False  # the last piece read did not end its line
        try:
            with os.fdopen(fd, "rb", closefd=False) as f:
                while True:
                    piece = f.readline(lim.read_bytes + 1)
                    if not piece:
                        break
                    tail = not piece.endswith(b"\n")
                    scanned += len(piece)
                    current = line_no
                    line_no += piece.endswith(b"\n")
                    if current < offset:
                        if scanned > lim.scan_bytes:
                            raise FsError(f"offset lies beyond the first {lim.scan_bytes} bytes")
                        continue
                    if limit and current >= offset + limit:
                        more = f"[more: continue with offset={current}]"
                        break
                    if size + len(piece) > lim.read_bytes:
                        if not out:  # one line longer than the cap: show its start
                            out.append(piece[: lim.read_bytes])
                            more = f"[line {current} cut at {lim.read_bytes} bytes]"
                        else:
                            more = f"[more: continue with offset={current}]"
                        break
                    out.append(piece)
                    size += len(piece)
        finally:
            os.close(fd)
        if not out and offset > 1:
            return f"[no line {offset}: the file has {line_no - 1 + tail} lines]"
        text = b"".join(out).decode("utf-8", errors="replace")
        if more and text and not text.endswith("\n"):
            more = "\n" + more
        return text + more

    # --- list_files ---

    async def list_files(self, args: Mapping[str, Any]) -> str:
        raw = args.get("path") or "."
        return await self._run(lambda: self._with(raw, self._list))

    def _list(self, anchor_fd: int, anchor: Anchor, r: _fs.Resolved) -> str:
        marks = {"dir": "/", "symlink": "@", "other": "|", "file": ""}
        entries = _fs.list_dir(anchor_fd, r, MAX_SCANNED_ENTRIES)
        names = sorted(name + marks[kind] for name, kind in entries[:MAX_SCANNED_ENTRIES])
        more = len(names) - MAX_LIST_ENTRIES
        text = "\n".join(names[:MAX_LIST_ENTRIES]) + (f"\n[{more} more]" if more > 0 else "")
        if len(entries) > MAX_SCANNED_ENTRIES:
            text += f"\n[the directory has more than {MAX_SCANNED_ENTRIES} entries: not all read]"
        return text

    # --- write_file / edit_file ---

    async def write_file(self, args: Mapping[str, Any]) -> str:
        content = _str_arg(args, "content")
        data = content.encode("utf-8", "surrogatepass")
        if len(data) > self._limits.write_bytes:
            raise FsError(f"content is larger than {self._limits.write_bytes} bytes")

        def write(_fd: int, anchor: Anchor, r: _fs.Resolved) -> str:
            existed = _fs.write_atomic(
                r, data, check=lambda: self._access.check_writable(anchor, r)
            )
            verb = "replaced" if existed else "created"
            return f"{verb} {self._access.display(anchor, r.parts)} ({len(data)} bytes)"

        return await self._run(lambda: self._with(args.get("path"), write))

    async def edit_file(self, args: Mapping[str, Any]) -> str:
        old, new = _str_arg(args, "old"), _str_arg(args, "new")
        if not old:
            raise FsError("old must not be empty")
        cap = self._limits.write_bytes

        def edit(_fd: int, anchor: Anchor, r: _fs.Resolved) -> str:
            self._access.check_writable(anchor, r)
            text = _fs.read_bytes(r, cap).decode("utf-8", "surrogateescape")
            count = text.count(old)
            if count != 1:
                where = "not found" if count == 0 else f"found {count} times (must be unique)"
                raise FsError(f"old text {where}; the file is unchanged")
            data = text.replace(old, new, 1).encode("utf-8", "surrogateescape")
            if len(data) > cap:
                raise FsError(f"the edited file would be larger than {cap} bytes")
            _fs.write_atomic(r, data, check=lambda: self._access.check_writable(anchor, r))
            return f"edited {self._access.display(anchor, r.parts)}"

        return await self._run(lambda: self._with(args.get("path"), edit))

    def tools(self) -> list[engine.Tool]:
        path = {"type": "string", "description": "path inside the workspace (relative to its root)"}
        return [
            engine.Tool(
                "read_file",
                "Read a UTF-8 text file of the workspace: lines from `offset` (1-based), at most "
                "`limit` lines (default: as many as fit).",
                self.read_file,
                {
                    "type": "object",
                    "properties": {
                        "path": path,
                        "offset": {"type": "integer", "minimum": 1},
                        "limit": {"type": "integer", "minimum": 1},
                    },
                    "required": ["path"],
                },
            ),
            engine.Tool(
                "list_files",
                "List a directory of the workspace (dir/ , link@ , special|; links not followed).",
                self.list_files,
                {"type": "object", "properties": {"path": path}},
            ),
            engine.Tool(
                "write_file",
                "Create or replace a UTF-8 text file of the workspace with `content` (atomic).",
                self.write_file,
                {
                    "type": "object",
                    "properties": {"path": path, "content": {"type": "string"}},
                    "required": ["path", "content"],
                },
            ),
            engine.Tool(
                "edit_file",
                "Replace the text `old` (which must occur exactly once) by `new` in a file.",
                self.edit_file,
                {
                    "type": "object",
                    "properties": {
                        "path": path,
                        "old": {"type": "string"},
                        "new": {"type": "string"},
                    },
                    "required": ["path", "old", "new"],
                },
            ),
        ]


def builtin_tools(
    profile: Profile,
    worker: Worker,
    *,
    allowed: Sequence[str] | None = None,
    protected: Sequence[str] = (".git",),
    limits: FileLimits | None = None,
    real_paths: Sequence[str] | None = None,
) -> engine.ToolRegistry:
    """The registry for one run: the profile's enabled tools that apply to this worker, and only
    those in ``allowed`` (the worker's effective tool set) when given: a tool outside it is not
    in the registry, so a model asking for it gets an error result."""
    available: dict[str, engine.Tool] = {
        "clock": engine.Tool(
            "clock", "The current UTC date and time (ISO 8601).", _clock, {"type": "object"}
        )
    }
    if worker.workspace is not None:
        access = WorkspaceAccess(worker.workspace, protected, real_paths)
        files = FileTools(access, limits or FileLimits())
        available.update((t.name, t) for t in files.tools())
    names = [n for n in profile.tools if n in available and (allowed is None or n in allowed)]
    return engine.ToolRegistry([available[n] for n in dict.fromkeys(names)])
