"""Request fields the Runtime validates itself (the gRPC edge checks only wire shapes)."""

from __future__ import annotations

from collections.abc import Mapping

from runtime_server import errors
from runtime_server.model import Limits, Workspace


def check_len(field_: str, value: str, limit: int) -> None:
    if len(value) > limit:
        raise errors.InvalidArgument(field_, f"is longer than {limit} characters", limit=str(limit))


def check_request_id(request_id: str, lim: Limits) -> None:
    check_len("request_id", request_id, lim.max_request_id_chars)
    if request_id and not request_id.isprintable():
        raise errors.InvalidArgument("request_id", "must be printable")


def check_labels(labels: Mapping[str, str], lim: Limits) -> None:
    if len(labels) > lim.max_labels:
        raise errors.InvalidArgument("labels", f"more than {lim.max_labels} labels")
    for key, value in labels.items():
        if not key or len(key) > lim.max_label_chars or not key.isprintable():
            raise errors.InvalidArgument("labels", f"bad label key {key[:40]!r}")
        if len(value) > lim.max_label_chars or not value.isprintable():
            raise errors.InvalidArgument(f"labels[{key}]", "bad label value")


def check_workspace(workspace: Workspace | None) -> None:
    if workspace is None:
        return
    if not workspace.root.startswith("/"):
        raise errors.InvalidArgument("workspace.root", "must be an absolute path")
    for i, mount in enumerate(workspace.mounts):
        if not mount.path.startswith("/"):
            raise errors.InvalidArgument(f"workspace.mounts[{i}].path", "must be an absolute path")
