"""Host policy: which workspaces and capabilities this host grants its workers.

In the serve config (or ``Runtime(policy=HostPolicy(...))`` when embedded)::

    [workspaces]
    allowed_roots = ["/srv/projects"]   # deny by default: with none, every workspace is refused
    protected_paths = [".git"]          # forced read-only below every root and mount (default)
    max_mounts = 16                     # mounts one workspace may have besides its root

    [capabilities]
    allowed = ["fs.read", "fs.write", "clock"]   # default: every capability this runtime knows

A workspace root or mount must lie, after ``realpath``, component-wise below an allowed root
(``/srv/projects-evil`` is not below ``/srv/projects``), and may never overlap (be an ancestor of,
equal to, or below) the runtime's own data directory or config file (``reserved_paths``; ``serve``
fills them in, and an embedded Runtime adds its SQLite store's directory).

Capabilities name groups of built-in tools (:data:`CAPABILITY_TOOLS`). A worker's effective tool
set is computed once at CreateWorker: the profile's tools ∩ the requested capabilities (an empty
request means "whatever the profile has", so older clients keep working) ∩ the host's allowed
capabilities; file tools also need a workspace, and the write tools a read-write root or mount.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime_server import errors
from runtime_server.model import MountMode, Workspace

# Capability -> the built-in tools it grants. New capabilities (net, shell) come with their tools.
CAPABILITY_TOOLS: Mapping[str, tuple[str, ...]] = {
    "fs.read": ("read_file", "list_files"),
    "fs.write": ("write_file", "edit_file"),
    "clock": ("clock",),
}
TOOL_CAPABILITY = {tool: cap for cap, tools in CAPABILITY_TOOLS.items() for tool in tools}
MAX_CAPABILITIES = 32


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """What this host grants; see the module docstring. The defaults deny every workspace."""

    allowed_roots: tuple[str, ...] = ()
    protected_paths: tuple[str, ...] = (".git",)
    allowed_capabilities: tuple[str, ...] = tuple(CAPABILITY_TOOLS)
    # Paths no workspace may overlap: the runtime's data directory and config file.
    reserved_paths: tuple[str, ...] = field(default=())

    def with_reserved(self, *paths: str | os.PathLike[str]) -> HostPolicy:
        extra = tuple(os.path.realpath(p) for p in paths)
        return HostPolicy(
            self.allowed_roots,
            self.protected_paths,
            self.allowed_capabilities,
            tuple(dict.fromkeys((*self.reserved_paths, *extra))),
        )


def parse_policy(
    workspaces: Mapping[str, Any], capabilities: Mapping[str, Any], fail: Any
) -> tuple[HostPolicy, dict[str, Any]]:
    """``[workspaces]`` and ``[capabilities]`` of the config → the policy, plus limit overrides
    (``max_mounts`` is a limit: GetRuntime reports it with the others)."""
    extra = sorted(set(workspaces) - {"allowed_roots", "protected_paths", "max_mounts"})
    if extra:
        raise fail(
            f"workspaces.{extra[0]}", "unknown key (allowed_roots, protected_paths, max_mounts)"
        )
    roots = _strings(workspaces, "allowed_roots", "workspaces", fail, [])
    for i, root in enumerate(roots):
        if not root.startswith("/") or "\x00" in root:
            raise fail(f"workspaces.allowed_roots[{i}]", "must be an absolute path")
    protected = _strings(workspaces, "protected_paths", "workspaces", fail, [".git"])
    for i, p in enumerate(protected):
        parts = [c for c in p.split("/") if c not in ("", ".")]
        if p.startswith("/") or not parts or ".." in parts:
            raise fail(f"workspaces.protected_paths[{i}]", "must be a relative path without '..'")
    limits: dict[str, Any] = {}
    if "max_mounts" in workspaces:
        value = workspaces["max_mounts"]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise fail("workspaces.max_mounts", "must be a non-negative integer")
        limits["max_mounts"] = value
    extra = sorted(set(capabilities) - {"allowed"})
    if extra:
        raise fail(f"capabilities.{extra[0]}", "unknown key (allowed)")
    allowed = _strings(capabilities, "allowed", "capabilities", fail, list(CAPABILITY_TOOLS))
    for cap in allowed:
        if cap not in CAPABILITY_TOOLS:
            raise fail("capabilities.allowed", f"unknown capability {cap!r}")
    policy = HostPolicy(tuple(os.path.normpath(r) for r in roots), tuple(protected), tuple(allowed))
    return policy, limits


def _strings(
    raw: Mapping[str, Any], name: str, table: str, fail: Any, default: list[str]
) -> list[str]:
    value = raw.get(name, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise fail(f"{table}.{name}", "must be a list of strings")
    return list(value)


# --- paths ---


def real_parts(path: str) -> tuple[str, ...]:
    """Components of ``realpath(path)`` (symlinks resolved, as the kernel would)."""
    return tuple(p for p in os.path.realpath(path).split("/") if p)


def overlaps(a: Sequence[str], b: Sequence[str]) -> bool:
    """One is a component-wise ancestor of, or equal to, the other (never a string prefix)."""
    n = min(len(a), len(b))
    return tuple(a[:n]) == tuple(b[:n])


def _below(path: Sequence[str], root: Sequence[str]) -> bool:
    return len(path) >= len(root) and tuple(path[: len(root)]) == tuple(root)


@dataclass(frozen=True, slots=True)
class Place:
    """One root or mount of a request, checked: its field name, real path and mode."""

    field: str
    path: str  # realpath
    parts: tuple[str, ...]
    mode: MountMode


def check_workspace(ws: Workspace | None, policy: HostPolicy, max_mounts: int) -> list[Place]:
    """Validate a requested workspace against the host policy; return its places (root first).

    Order matters: shape errors (INVALID_ARGUMENT) first, then the policy (PERMISSION_DENIED),
    and only then whether the path exists and is a directory, so a refused caller learns nothing
    about paths outside the allowed roots."""
    if ws is None:
        return []
    if len(ws.mounts) > max_mounts:
        raise errors.InvalidArgument(
            "workspace.mounts", f"more than {max_mounts} mounts", limit=str(max_mounts)
        )
    raw = [("workspace.root", ws.root, ws.root_mode)]
    raw += [(f"workspace.mounts[{i}].path", m.path, m.mode) for i, m in enumerate(ws.mounts)]
    for name, path, _ in raw:
        if not path:
            raise errors.InvalidArgument(name, "is required")
        if "\x00" in path:
            raise errors.InvalidArgument(name, "contains a NUL byte")
        if not path.startswith("/"):
            raise errors.InvalidArgument(name, "must be an absolute path")
        if ".." in path.split("/"):
            raise errors.InvalidArgument(name, "must not contain '..'")
    places: list[Place] = []
    for name, path, mode in raw:
        try:
            real = os.path.realpath(path)
        except (OSError, ValueError):
            raise errors.InvalidArgument(name, "cannot be resolved") from None
        parts = tuple(p for p in real.split("/") if p)
        check_allowed(name, parts, policy)
        if not os.path.isdir(real):
            raise errors.InvalidArgument(name, "is not an existing directory")
        for other in places:
            if other.parts == parts:
                raise errors.InvalidArgument(name, f"is the same directory as {other.field}")
        places.append(Place(name, real, parts, mode))
    return places


def check_allowed(name: str, parts: Sequence[str], policy: HostPolicy) -> None:
    """WORKSPACE_NOT_ALLOWED unless the real path ``parts`` lies below an allowed root and away
    from the runtime's own data and config."""
    allowed = [real_parts(r) for r in policy.allowed_roots]
    if not any(_below(parts, root) for root in allowed):
        if not allowed:
            why = "this host allows no workspaces (no [workspaces] allowed_roots)"
        else:
            why = "is not below an allowed root of this host"
        raise errors.WorkspaceNotAllowed(name, why)
    if any(overlaps(parts, real_parts(r)) for r in policy.reserved_paths):
        raise errors.WorkspaceNotAllowed(name, "overlaps the runtime's own data or config")


def places_of(ws: Workspace | None) -> list[Place]:
    """The places of a stored workspace, resolved again (at restart: symlinks may have moved)."""
    if ws is None:
        return []
    raw = [("workspace.root", ws.root, ws.root_mode)]
    raw += [(f"workspace.mounts[{i}].path", m.path, m.mode) for i, m in enumerate(ws.mounts)]
    out = []
    for name, path, mode in raw:
        real = os.path.realpath(path)
        out.append(Place(name, real, tuple(p for p in real.split("/") if p), mode))
    return out


def check_capabilities(requested: Sequence[str], policy: HostPolicy) -> tuple[str, ...]:
    if len(requested) > MAX_CAPABILITIES:
        raise errors.InvalidArgument("capabilities", f"more than {MAX_CAPABILITIES} entries")
    seen: list[str] = []
    for i, cap in enumerate(requested):
        if cap not in CAPABILITY_TOOLS:
            known = ", ".join(CAPABILITY_TOOLS)
            raise errors.InvalidArgument(
                f"capabilities[{i}]", f"unknown capability {cap[:64]!r} (known: {known})"
            )
        if cap not in policy.allowed_capabilities:
            raise errors.CapabilityNotAllowed(cap)
        if cap not in seen:
            seen.append(cap)
    return tuple(seen)


def effective_tools(
    profile_tools: Sequence[str],
    capabilities: Sequence[str],
    policy: HostPolicy,
    ws: Workspace | None,
) -> tuple[str, ...]:
    """profile tools ∩ requested capabilities (empty = all) ∩ host policy ∩ what applies."""
    writable = ws is not None and (
        ws.root_mode is MountMode.READ_WRITE
        or any(m.mode is MountMode.READ_WRITE for m in ws.mounts)
    )
    out: list[str] = []
    for tool in profile_tools:
        cap = TOOL_CAPABILITY.get(tool)
        if cap is None or tool in out:
            continue  # not a built-in tool: nothing grants it
        if capabilities and cap not in capabilities:
            continue
        if cap not in policy.allowed_capabilities:
            continue
        if cap.startswith("fs.") and ws is None:
            continue
        if cap == "fs.write" and not writable:
            continue
        out.append(tool)
    return tuple(out)
