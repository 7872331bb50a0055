"""Which anchor (workspace root or mount) a tool's path goes through, and what it may do there.

A tool path is either relative (to the workspace root) or absolute; an absolute path must lie
below the root or a mount, compared component by component (``/sandbox-evil`` is not below
``/sandbox``), else it is refused. The longest matching anchor wins, so a mount nested inside the
root is reached through its own descriptor and mode.

Write permission is decided on the *resolved* path (after in-workspace symlinks): the mode of the
innermost anchor that contains it, and never on a protected path (``protected_paths``, default
``.git``; a one-component entry protects that name at any depth, a longer entry is anchored at the
root of every anchor). So ``ln -s .git g`` and writing ``g/config`` is still refused.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from runtime_server.model import MountMode, Workspace
from runtime_server.runtime._fs import FsError, Resolved, split_path


def path_parts(path: str) -> tuple[str, ...]:
    """Lexical components of an absolute host path (as configured: no symlinks resolved)."""
    return tuple(p for p in os.path.normpath(path).split("/") if p not in ("", "."))


@dataclass(frozen=True, slots=True)
class Anchor:
    path: str  # as requested (what the model uses in absolute paths)
    parts: tuple[str, ...]
    writable: bool
    real: str  # the real path vetted at create: the tools open this one, never ``path``


def anchors_of(ws: Workspace, real_paths: Sequence[str] | None = None) -> tuple[Anchor, ...]:
    """The root first, then the mounts, in request order. ``real_paths`` (same order) are the
    paths the allocation manager claimed; without them, ``realpath`` now."""
    raw = [(ws.root, ws.root_mode), *((m.path, m.mode) for m in ws.mounts)]
    if real_paths is None or len(real_paths) != len(raw):
        real_paths = [os.path.realpath(path) for path, _ in raw]
    return tuple(
        Anchor(path, path_parts(path), mode is MountMode.READ_WRITE, real)
        for (path, mode), real in zip(raw, real_paths, strict=True)
    )


def _starts(parts: Sequence[str], prefix: Sequence[str]) -> bool:
    return len(parts) >= len(prefix) and tuple(parts[: len(prefix)]) == tuple(prefix)


class WorkspaceAccess:
    """The anchors of one worker's workspace and the host's protected paths."""

    def __init__(
        self,
        ws: Workspace,
        protected: Sequence[str] = (".git",),
        real_paths: Sequence[str] | None = None,
    ) -> None:
        self.anchors = anchors_of(ws, real_paths)
        self.root = self.anchors[0]
        self._protected = tuple(path_parts("/" + p) for p in protected if p.strip("/"))

    def locate(self, raw: object) -> tuple[Anchor, tuple[str, ...]]:
        """The anchor a caller's path goes through and the components below it."""
        absolute, parts = split_path(raw)
        full = parts if absolute else (*self.root.parts, *parts)
        best: Anchor | None = None
        for anchor in self.anchors:
            if _starts(full, anchor.parts) and (
                best is None or len(anchor.parts) > len(best.parts)
            ):
                best = anchor
        if best is None:
            raise FsError("path is outside the workspace")
        return best, tuple(full[len(best.parts) :])

    def check_writable(self, anchor: Anchor, r: Resolved) -> None:
        """Refuse a write to ``r`` (resolved below ``anchor``) on a read-only or protected path."""
        full = (*anchor.parts, *r.parts)
        inner = max(
            (a for a in self.anchors if _starts(full, a.parts)),
            key=lambda a: len(a.parts),
            default=anchor,
        )
        if not inner.writable or not anchor.writable:
            raise FsError("the workspace is read-only here")
        for a in self.anchors:
            if not _starts(full, a.parts):
                continue
            below = full[len(a.parts) :]
            for entry in self._protected:
                hit = entry[0] in below if len(entry) == 1 else _starts(below, entry)
                if hit:
                    raise FsError("the path is protected (read-only by host policy)")

    def display(self, anchor: Anchor, parts: Sequence[str]) -> str:
        """How a resolved path is shown to the model: relative to the root when below it."""
        if anchor is self.root:
            return "/".join(parts) or "."
        return "/".join((anchor.path.rstrip("/"), *parts))
