"""ManagementService through the real server with the real client: GetRuntime (state, worker
counts, limits, capabilities), ListProfiles and ListDiagnostics (paging, capacity)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime_client import (
    BusyPolicy,
    DiagnosticLevel,
    RuntimeClient,
    RuntimeState,
)
from runtime_server.model import DiagnosticLevel as ServerLevel
from runtime_server.model import Limits

if TYPE_CHECKING:
    from serving import Served, ServeFactory


LONG = " ".join(f"w{i}" for i in range(200))  # on "very-slow" this runs for minutes: cancel it


async def test_get_runtime_reports_state_counts_limits_and_capabilities(
    serve: ServeFactory,
) -> None:
    limits = Limits(max_queue_per_worker=3, max_page_size=50, default_page_size=7, max_labels=9)
    served = await serve(limits=limits)
    client = served.client
    idle = (await client.create_worker(profile="echo")).worker
    busy = (await client.create_worker(profile="very-slow")).worker
    stopped = (await client.create_worker(profile="echo")).worker
    await client.send_input(busy.worker_id, LONG)
    await client.send_input(busy.worker_id, "later", busy_policy=BusyPolicy.ENQUEUE)
    await client.stop_worker(stopped.worker_id)

    info = await client.get_runtime()

    assert info.state is RuntimeState.SERVING
    assert info.runtime_id
    assert info.runtime_id == idle.runtime_id == served.runtime.runtime_id
    assert info.version
    assert info.store_kind == "memory"
    assert info.started_at > 0
    assert (info.workers.idle, info.workers.running, info.workers.stopped) == (1, 1, 1)
    assert info.workers.total == 3
    assert (info.active_runs, info.queued_runs) == (1, 1)
    assert info.last_seq > 0
    assert info.auth_required is False
    assert info.limits.max_queue_per_worker == 3
    assert info.limits.max_page_size == 50
    assert info.limits.default_page_size == 7
    assert info.limits.max_labels == 9
    assert info.limits.max_input_chars == limits.max_input_chars
    assert info.limits.subscriber_buffer_events == limits.subscriber_buffer_events
    assert info.limits.diagnostics_capacity == limits.diagnostics_capacity
    # every kind the engine speaks, configured or not (issue 8: anthropic was missing)
    assert info.capabilities.provider_kinds == (
        "echo",
        "openai_chat",
        "anthropic",
        "openai_responses",
    )
    assert info.capabilities.profiles == ("echo", "slow", "very-slow")
    assert {"single_flight", "busy_policy_enqueue", "cancellation"} <= set(
        info.capabilities.features
    )
    await client.stop_worker(busy.worker_id)
    after = await client.get_runtime()
    assert (after.workers.running, after.workers.stopped, after.active_runs) == (0, 2, 0)
    assert after.queued_runs == 0


async def test_list_profiles_describes_every_configured_profile(client: RuntimeClient) -> None:
    profiles = await client.list_profiles()

    assert [p.name for p in profiles] == ["echo", "slow", "very-slow"]
    echo = profiles[0]
    assert echo.builtin is True
    assert (echo.provider, echo.provider_kind, echo.model) == ("builtin", "echo", "echo")
    assert echo.description
    assert all(p.provider_kind == "echo" for p in profiles)
    assert [p.builtin for p in profiles[1:]] == [False, False]


async def test_list_diagnostics_pages_newest_first(served: Served) -> None:
    for i in range(5):
        served.runtime._diagnose(ServerLevel.WARNING, f"TEST_{i}", f"diagnostic number {i}")
    client = served.client

    seen: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await client.list_diagnostics(page_size=2, page_token=token)
        pages += 1
        assert page.total_size == 5
        assert len(page.items) <= 2
        seen += [d.code for d in page.items]
        token = page.next_page_token
        if not token:
            break
    assert pages == 3
    assert seen == ["TEST_4", "TEST_3", "TEST_2", "TEST_1", "TEST_0"]
    first = (await client.list_diagnostics(page_size=1)).items[0]
    assert first.level is DiagnosticLevel.WARNING
    assert first.message == "diagnostic number 4"
    assert first.time > 0


async def test_list_diagnostics_is_bounded_by_its_capacity(serve: ServeFactory) -> None:
    served = await serve(limits=Limits(diagnostics_capacity=3))
    for i in range(5):
        served.runtime._diagnose(ServerLevel.INFO, f"TEST_{i}", "x")

    page = await served.client.list_diagnostics()

    assert page.total_size == 3
    assert [d.code for d in page.items] == ["TEST_4", "TEST_3", "TEST_2"]
    assert (await served.client.get_runtime()).limits.diagnostics_capacity == 3
