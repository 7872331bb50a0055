"""Request limits and the one id rule, applied at the edge of the core before any lookup.

Every string and list a request carries has an explicit bound (``Limits``, reported by
GetRuntime); past it the call is INVALID_ARGUMENT naming the field. Nothing a caller sends is
stored or echoed at an unbounded length, so no stored value can grow a later answer (a page, a
batch, an error's metadata) past what gRPC can send.

**Id spelling.** Worker and run ids are accepted only in the canonical UUID form the Runtime
itself hands out: 36 characters, lower-case hex, hyphenated 8-4-4-4-12. Other spellings that
Python's ``uuid.UUID`` would parse (upper case, ``{...}``, ``urn:uuid:...``, bare hex) are refused
with INVALID_ARGUMENT by every RPC alike, rather than normalised: one stored form, no aliases, and
no RPC that silently matches nothing (an event filter compares ids as strings). A refused id is
never echoed back, so a huge one cannot bloat the error either.
"""

from __future__ import annotations

import re

from runtime_server import errors, wire_size
from runtime_server.model import ConfigBundleRef, Limits, Worker, Workspace
from runtime_server.runtime._validation import check_len

_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

CANONICAL_FORM = "must be a UUID in canonical form (lower-case, hyphenated 8-4-4-4-12)"


def is_canonical_uuid(value: str) -> bool:
    return len(value) == 36 and _CANONICAL_UUID.fullmatch(value) is not None


def check_id(field: str, value: str, lim: Limits) -> None:
    """A worker or run id: required, at most ``max_id_chars``, canonical UUID spelling."""
    if not value:
        raise errors.InvalidArgument(field, "is required")
    check_len(field, value, lim.max_id_chars)
    if not is_canonical_uuid(value):
        raise errors.InvalidArgument(field, CANONICAL_FORM)


def check_name(field: str, value: str, lim: Limits) -> None:
    """A name looked up in a table (a profile): at most ``max_id_chars``."""
    check_len(field, value, lim.max_id_chars)


def check_page_token(page_token: str, lim: Limits) -> None:
    """Tokens the Runtime issues are short; a longer one cannot be ours."""
    check_len("page_token", page_token, lim.max_ref_chars)


def check_reason(field: str, value: str, lim: Limits) -> None:
    check_len(field, value, lim.max_reason_chars)


def check_workspace_size(workspace: Workspace | None, lim: Limits) -> None:
    if workspace is None:
        return
    check_len("workspace.root", workspace.root, lim.max_path_chars)
    if len(workspace.mounts) > lim.max_mounts:
        raise errors.InvalidArgument(
            "workspace.mounts", f"more than {lim.max_mounts} mounts", limit=str(lim.max_mounts)
        )
    for i, mount in enumerate(workspace.mounts):
        check_len(f"workspace.mounts[{i}].path", mount.path, lim.max_path_chars)


def check_config_bundle(ref: ConfigBundleRef | None, lim: Limits) -> None:
    if ref is None:
        return
    check_len("config_bundle.id", ref.id, lim.max_id_chars)
    check_len("config_bundle.digest", ref.digest, lim.max_ref_chars)


def check_worker_fits(worker: Worker, lim: Limits, headroom: int) -> None:
    """The worker record travels whole in GetWorker, its WorkerCreated event and ListWorkers
    pages: it must fit one message (with ``headroom`` for what surrounds it). Only a Runtime
    whose ``max_message_bytes`` is small for its other limits can meet this; the field named is
    the worker's largest part."""
    room = lim.max_message_bytes - headroom
    if wire_size.worker_size(worker) <= room:
        return
    parts = {
        "labels": wire_size.string_map(worker.labels),
        "workspace": wire_size.workspace_body(worker.workspace) if worker.workspace else 0,
        "config_bundle": wire_size.bundle_body(worker.config_bundle) if worker.config_bundle else 0,
        "display_name": wire_size.string(worker.display_name),
    }
    raise errors.InvalidArgument(
        max(parts, key=lambda k: parts[k]),
        f"makes the worker larger than one message can carry ({room} bytes)",
    )
