"""Diagnostics survive restarts (issue 8 item 11): the ring is kept in the store, bounded by
``diagnostics_capacity``, so what ``ListDiagnostics`` showed before a ``kill -9`` of a real SQLite
``serve`` process is still there afterwards, with the new start's own diagnostic on top."""

from __future__ import annotations

from pathlib import Path

from serving import ServeProcessFactory, write_config

from runtime_client import Diagnostic, RuntimeClient


async def _diagnostics(client: RuntimeClient) -> list[Diagnostic]:
    page = await client.list_diagnostics(page_size=100)
    assert not page.next_page_token
    return list(page.items)


async def test_diagnostics_survive_kill9_restarts_within_their_capacity(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    config = write_config(tmp_path / "cfg.toml", diagnostics_capacity=2)
    sp = await serve_process(data, config=config)
    client = sp.client()
    await client.create_worker()  # a restart with workers records a RECOVERED diagnostic
    assert await _diagnostics(client) == []
    sp.kill9()

    sp = await serve_process(data, config=config)
    first = await _diagnostics(sp.client())
    assert [d.code for d in first] == ["RECOVERED"]
    sp.kill9()

    sp = await serve_process(data, config=config)
    second = await _diagnostics(sp.client())
    assert [d.code for d in second] == ["RECOVERED", "RECOVERED"]  # newest first
    assert second[1] == first[0]  # the one from before the restart, exactly
    sp.terminate()

    sp = await serve_process(data, config=config)
    third = await _diagnostics(sp.client())
    assert len(third) == 2  # bounded by diagnostics_capacity
    assert third[1] == second[0]
    assert third[0].time > second[0].time
