"""Issue 13 item 5's building block, ``BundleDirectory``: bundles kept as files are pushed eagerly
(``push_all``) or lazily (a create that meets CONFIG_BUNDLE_NOT_FOUND pushes the bundle and
retries once), against a real served Runtime through the client and in-process."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from runtime_client import (
    BundleDirectory,
    ConfigBundleNotFound,
    ConfigBundlePut,
    ConfigBundleRef,
    ProfileNotFound,
)
from runtime_server.embedded import EmbeddedRuntime

if TYPE_CHECKING:
    from serving import Served

TEAM = b'[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\n'
OPS = b'[profiles.oncall]\nprovider = "builtin"\nmodel = "echo"\n'


class CountingPuts:
    """A real handle, with its put_bundle calls counted (everything else passes through)."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle
        self.puts: list[str] = []

    async def put_bundle(self, id: str, content: bytes, **kwargs: Any) -> ConfigBundlePut:
        self.puts.append(id)
        put: ConfigBundlePut = await self._handle.put_bundle(id, content, **kwargs)
        return put

    def __getattr__(self, name: str) -> Any:
        return getattr(self._handle, name)


def directory(tmp_path: Path) -> BundleDirectory:
    d = tmp_path / "bundles"
    d.mkdir()
    (d / "team.toml").write_bytes(TEAM)
    (d / "ops.toml").write_bytes(OPS)
    (d / "notes.txt").write_text("not a bundle")
    (d / ".team.toml").write_bytes(b"an editor's swap file: not a bundle")
    return BundleDirectory(d)


@pytest.mark.parametrize("side", ["remote", "embedded"])
async def test_creating_on_a_fresh_runtime_triggers_exactly_one_put(
    served: Served, tmp_path: Path, side: str
) -> None:
    bundles = directory(tmp_path)
    real = served.client if side == "remote" else EmbeddedRuntime(served.runtime)
    handle = CountingPuts(real)
    ref = bundles.ref("team")
    assert await bundles.availability(handle) == {"ops": False, "team": False}

    first = await bundles.create_worker(handle, profile="helper", config_bundle=ref)
    assert handle.puts == ["team"]
    assert first.worker.config_bundle == ref
    second = await bundles.create_worker(handle, profile="helper", config_bundle=ref)
    assert handle.puts == ["team"]  # stored now: no second put
    assert second.worker.worker_id != first.worker.worker_id
    assert await bundles.availability(handle) == {"ops": False, "team": True}

    # errors that a put cannot fix stand, after at most one put
    with pytest.raises(ProfileNotFound):
        await bundles.create_worker(handle, profile="nope", config_bundle=ref)
    assert handle.puts == ["team"]
    unknown = ConfigBundleRef("team", "sha256:" + "0" * 64)  # not these bytes
    with pytest.raises(ConfigBundleNotFound):
        await bundles.create_worker(handle, profile="helper", config_bundle=unknown)
    assert handle.puts == ["team"]


async def test_push_all_is_eager_and_idempotent(served: Served, tmp_path: Path) -> None:
    bundles = directory(tmp_path)
    pushed = await bundles.push_all(served.client)
    assert sorted(pushed) == ["ops", "team"]
    assert all(p.created for p in pushed.values())
    assert not any(p.created for p in (await bundles.push_all(served.client)).values())
    # editing a file makes a new version; the old one stays on the runtime
    old = bundles.ref("team")
    (bundles.path / "team.toml").write_bytes(TEAM + b"# v2\n")
    assert bundles.ref("team") != old
    assert (await bundles.push_all(served.client))["team"].created
    assert (await served.client.list_bundles(id="team")).total_size == 2
