"""The HTTP side of bundle sync: ``GET /api/bundles`` (what the directory holds and where each
bundle is), the ``bundle`` field of ``POST /api/workers`` and the placement of such a create.

A create names a bundle as ``"bundle": "ID@sha256:HEX"`` (the ``ref`` that ``GET /api/bundles``
shows) plus the bundle's ``profile``. With no ``runtime_id`` the worker goes to the least-loaded
READY runtime (the registry's own placement looks for the profile among a runtime's host
profiles, where a bundle's profile never is); a runtime already holding the bundle wins a tie.
"""

from __future__ import annotations

import re
from typing import Any

from backend.bundle_files import ID_PATTERN
from backend.errors import ApiError
from backend.service import Backend
from runtime_client import ConfigBundleRef, RuntimeHealth
from runtime_client.errors import NoRuntimeAvailable

__all__ = ["bundle_ref", "bundles_view", "place_bundle"]

MAX_REF_CHARS = 400
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def bundle_ref(value: Any) -> ConfigBundleRef | None:
    """The ``bundle`` field of a create: absent/empty → None; else ``ID@DIGEST``."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_REF_CHARS:
        raise ApiError.invalid("bundle", f"must be a string ID@DIGEST of at most {MAX_REF_CHARS}")
    bundle_id, sep, digest = value.partition("@")
    # checked here, not left to a runtime: an id no runtime accepts, or a digest no bytes have,
    # came back as CONFIG_BUNDLE_NOT_FOUND (and "sha256:00" was scrubbed as a HOST:PORT)
    if not sep or not ID_PATTERN.fullmatch(bundle_id) or not _DIGEST.fullmatch(digest):
        raise ApiError.invalid(
            "bundle", "must be ID@sha256:<64 lower-case hex digits> (a ref from GET /api/bundles)"
        )
    return ConfigBundleRef(bundle_id, digest)


async def place_bundle(backend: Backend, ref: ConfigBundleRef) -> str:
    """The runtime for a create with bundle ``ref`` when the caller names none."""
    registry = backend.require_registry()
    local = backend.bundles.bundles().get(ref.id)
    best: tuple[int, int, int, str] | None = None
    chosen = ""
    for status in registry.runtimes():
        rid = status.runtime_id
        if status.state is not RuntimeHealth.READY or not rid:
            continue
        known = backend.bundles.availability(rid, local) if local is not None else None
        held = 0 if known is not None and known.state == "present" else 1
        load = status.load
        key = (load.active_runs + load.queued_runs, load.workers, held, status.alias)
        if best is None or key < best:
            best, chosen = key, rid
    if not chosen:
        raise NoRuntimeAvailable("no READY runtime to create the worker on", profile=ref.id)
    return chosen


async def bundles_view(backend: Backend) -> dict[str, Any]:
    """Every bundle file (re-read now) with its availability on each known runtime."""
    sync = backend.bundles
    found = await sync.refresh()
    statuses = [s for s in backend.require_registry().runtimes() if s.runtime_id]
    out = []
    for b in found.values():
        places = []
        for s in statuses:
            rid = s.runtime_id or ""
            known = sync.availability(rid, b) if b.ok else None
            places.append(
                {
                    "runtime_id": rid,
                    "alias": s.alias,
                    "state": known.state if known is not None else "missing",
                    "reason": known.reason if known is not None else "",
                    "since": known.since if known is not None else 0.0,
                }
            )
        out.append(
            {
                "id": b.id,
                "file": b.file,
                "digest": b.digest,
                "ref": f"{b.id}@{b.digest}" if b.ok else "",
                "profiles": list(b.profiles),
                "error": b.error,
                "runtimes": places,
            }
        )
    puts = [
        {"runtime_id": s.runtime_id, "alias": s.alias, "puts": sync.puts.get(s.runtime_id or "", 0)}
        for s in statuses
    ]
    return {"enabled": sync.enabled, "bundles": out, "puts": puts}
