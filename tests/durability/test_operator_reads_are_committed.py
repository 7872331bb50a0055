"""The operators' reads answer only what is committed too (runtime._settle): ListDiagnostics
(a diagnostic enters the ring when it is appended, before its commit) and ListWorkspaceClaims (a
claim is taken with its worker's create, before its commit), Get/ListConfigBundles (a put changes
the index before its commit). Same technique as test_reads_are_committed (a real SQLite store
whose commit reports are held back), or SQLite's own write lock held by another connection."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from pathlib import Path

from held_reports import HeldReports
from serving import eventually

from runtime_server.model import DiagnosticLevel, Workspace
from runtime_server.runtime import HostPolicy, Runtime, parse_config
from runtime_server.store import SqliteStore

BOUND = 30.0  # a safety net on a shared machine, not a speed assertion
HELD = 0.2  # how long a read is given to (wrongly) answer while the commit is held


async def test_a_diagnostic_is_listed_once_committed(tmp_path: Path) -> None:
    store = HeldReports(tmp_path / "runtime.sqlite3")
    rt = Runtime(store=store, config=parse_config({}))
    await rt.start()
    try:
        store.holding = True
        rt.diagnose(DiagnosticLevel.WARNING, "TEST_HELD", "written, not yet committed")
        listing = asyncio.ensure_future(rt.list_diagnostics())
        await asyncio.sleep(HELD)
        assert not listing.done(), "ListDiagnostics showed a diagnostic not yet committed"
        store.release()
        page = await asyncio.wait_for(listing, BOUND)
        assert page.items[0].code == "TEST_HELD"
    finally:
        store.release()
        await rt.close()


async def test_a_workspace_claim_is_listed_once_its_worker_is_committed(tmp_path: Path) -> None:
    root = tmp_path / "allowed" / "work"
    root.mkdir(parents=True)
    store = HeldReports(tmp_path / "data" / "runtime.sqlite3")
    rt = Runtime(
        store=store,
        config=parse_config({}),
        policy=HostPolicy(allowed_roots=(str(tmp_path / "allowed"),)),
    )
    await rt.start()
    try:
        store.holding = True
        creating = asyncio.ensure_future(rt.create_worker(workspace=Workspace(str(root))))
        await eventually(lambda: rt.info().workspace_claims == 1, within=BOUND)
        listing = asyncio.ensure_future(rt.list_workspace_claims())
        await asyncio.sleep(HELD)
        assert not listing.done(), "ListWorkspaceClaims showed the claim of an uncommitted worker"
        store.release()
        wid = (await asyncio.wait_for(creating, BOUND)).worker.worker_id
        assert [c.worker_id for c in (await asyncio.wait_for(listing, BOUND)).items] == [wid]
    finally:
        store.release()
        await rt.close()


BUNDLE = b"""\
[profiles.helper]
provider = "builtin"
model = "echo"
"""


async def test_a_config_bundle_is_shown_once_its_put_is_committed(tmp_path: Path) -> None:
    """A bundle's put writes no event, so there are no commit reports to hold: here another
    connection holds SQLite's write lock (BEGIN IMMEDIATE), so the store's writer waits in its
    busy handler and the put is not committed until the lock is let go."""
    path = tmp_path / "runtime.sqlite3"
    rt = Runtime(store=SqliteStore(path, retention_interval=0.0), config=parse_config({}))
    await rt.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # the write lock: the writer cannot commit meanwhile
        putting = asyncio.ensure_future(rt.config_bundles.put_bundle("team", BUNDLE))
        await asyncio.sleep(0)  # the put changes the index and writes its batch, then waits
        digest = "sha256:" + hashlib.sha256(BUNDLE).hexdigest()
        listing = asyncio.ensure_future(rt.config_bundles.list_bundles())
        getting = asyncio.ensure_future(rt.config_bundles.get_bundle("team", digest))
        await asyncio.sleep(HELD)
        assert not putting.done()  # (the put itself answers once committed)
        assert not listing.done(), "ListConfigBundles showed a bundle whose put is not committed"
        assert not getting.done(), "GetConfigBundle showed a bundle whose put is not committed"
        other.execute("ROLLBACK")
        assert (await asyncio.wait_for(putting, BOUND))[1] is True
        assert [b.digest for b in (await asyncio.wait_for(listing, BOUND)).items] == [digest]
        assert (await asyncio.wait_for(getting, BOUND)).bundle.digest == digest
    finally:
        other.close()
        await rt.close()
