"""The operators' reads answer only what is committed too (runtime._settle): ListDiagnostics
(a diagnostic enters the ring when it is appended, before its commit) and ListWorkspaceClaims (a
claim is taken with its worker's create, before its commit). Same technique as
test_reads_are_committed: a real SQLite store whose commit reports are held back."""

from __future__ import annotations

import asyncio
from pathlib import Path

from held_reports import HeldReports
from serving import eventually

from runtime_server.model import DiagnosticLevel, Workspace
from runtime_server.runtime import HostPolicy, Runtime, parse_config

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
