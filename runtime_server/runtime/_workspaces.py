"""The Runtime's workspace side in one object: host policy, capability checks, the allocation
manager and the built-in tools factory. The Runtime calls it from small hooks (create, stop,
start, info, run) so that ``_runtime.py`` stays about workers and runs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import engine
from runtime_server import errors
from runtime_server.model import Limits, Page, Worker, WorkerState, Workspace
from runtime_server.runtime._allocation import Allocations, Claim
from runtime_server.runtime._paging import decode_token, encode_token, fitting
from runtime_server.runtime._policy import (
    HostPolicy,
    Place,
    check_allowed,
    check_capabilities,
    check_workspace,
    effective_tools,
    places_of,
)
from runtime_server.runtime._profiles import Profile
from runtime_server.runtime._tools import FileLimits, builtin_tools


@dataclass(frozen=True, slots=True)
class Prepared:
    """A CreateWorker request's workspace side, validated (nothing claimed yet)."""

    places: tuple[Place, ...]
    capabilities: tuple[str, ...]
    tools: tuple[str, ...]


class Workspaces:
    def __init__(self, policy: HostPolicy, limits: Limits) -> None:
        self.policy = policy
        self._limits = limits
        self.allocations = Allocations()
        self._files = FileLimits(
            read_bytes=max(1, limits.max_file_read_bytes),
            scan_bytes=max(1, limits.max_file_scan_bytes),
            write_bytes=max(1, limits.max_file_write_bytes),
        )

    def prepare(
        self, profile: Profile, workspace: Workspace | None, capabilities: Sequence[str]
    ) -> Prepared:
        """Validate (INVALID_ARGUMENT, PERMISSION_DENIED) and compute the effective tools."""
        caps = check_capabilities(capabilities, self.policy)
        places = check_workspace(workspace, self.policy, self._limits.max_mounts)
        tools = effective_tools(profile.tools, caps, self.policy, workspace)
        return Prepared(tuple(places), caps, tools)

    def tools_of(self, profile: Profile | None, worker: Worker) -> tuple[str, ...]:
        """The effective tools of a worker stored before they were recorded."""
        if profile is None:
            return ()
        return effective_tools(profile.tools, worker.capabilities, self.policy, worker.workspace)

    def rebuild(self, workers: Sequence[Worker]) -> list[tuple[str, errors.RuntimeServiceError]]:
        """Claims of the live workers, in creation order, with their paths resolved again; returns
        the workers that must stop: a path that now conflicts with an earlier worker's, or that
        now resolves outside the host policy (a symlink retargeted while the runtime was down)."""
        live = sorted(
            (w for w in workers if w.state is not WorkerState.STOPPED and w.workspace is not None),
            key=lambda w: (w.created_at, w.worker_id),
        )
        refused: list[tuple[str, errors.RuntimeServiceError]] = []
        claimable: list[tuple[str, list[Place]]] = []
        for w in live:
            places = places_of(w.workspace)
            try:
                for place in places:
                    check_allowed(place.field, place.parts, self.policy)
            except errors.WorkspaceNotAllowed as exc:
                refused.append((w.worker_id, exc))
                continue
            claimable.append((w.worker_id, places))
        return [*refused, *self.allocations.rebuild(claimable)]

    def claims_page(
        self, worker_id: str, page_size: int, page_token: str, page_chars: int
    ) -> Page[Claim]:
        """One page of claims (worker creation order), cut by count and by size (a path may be
        4 kB), so a page always fits in one message."""
        claims = self.allocations.claims(worker_id)
        start = 0
        if page_token:
            value = decode_token(page_token, "c")
            if not value.isdigit():
                raise errors.InvalidArgument("page_token", "is not a claims page token")
            start = int(value)
        chunk = claims[start : start + page_size]
        chunk = chunk[: fitting(chunk, lambda c: len(c.path) + len(c.worker_id) + 16, page_chars)]
        end = start + len(chunk)
        token = encode_token("c", str(end)) if end < len(claims) else ""
        return Page(tuple(chunk), token, len(claims))

    def tools_factory(self) -> Callable[[Profile, Worker], engine.ToolRegistry]:
        """The default tools factory: the worker's effective tools, nothing else."""

        def build(profile: Profile, worker: Worker) -> engine.ToolRegistry:
            if not profile.tools:  # (the echo profile's runs): nothing to build or look up
                return engine.ToolRegistry()
            allowed = worker.tools if worker.tools is not None else self.tools_of(profile, worker)
            return builtin_tools(
                profile,
                worker,
                allowed=allowed,
                protected=self.policy.protected_paths,
                limits=self._files,
                # the paths claimed (and vetted) at create, root first: never re-resolved
                real_paths=[c.path for c in self.allocations.claims(worker.worker_id)] or None,
            )

        return build
