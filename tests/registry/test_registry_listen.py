"""``RuntimeRegistry.listen``: a listener registered before ``start`` sees every runtime's first
READY (what the Backend's bundle sync pushes on) and every later change, and stops when asked."""

from __future__ import annotations

from registry_support import RegistryFactory, status_of, wait_state
from serving import eventually

from runtime_client import RuntimeHealth, RuntimeStateChanged
from runtime_server.embedded import EmbeddedRuntime


async def test_a_listener_sees_the_first_ready_and_later_changes_until_stopped(
    registry_factory: RegistryFactory,
) -> None:
    embedded = await EmbeddedRuntime.open()
    try:
        registry = await registry_factory()
        registry.add_embedded(embedded)
        seen: list[RuntimeStateChanged] = []
        stop = registry.listen(seen.append)
        await registry.start()
        status = await wait_state(registry, "embedded", RuntimeHealth.READY)
        assert [(c.previous, c.state) for c in seen] == [
            (RuntimeHealth.CONNECTING, RuntimeHealth.READY)
        ]
        assert seen[0].runtime_id == status.runtime_id  # pinned before READY is told
        stop()
        await embedded.close()  # the runtime goes away: no longer told to this listener
        await eventually(
            lambda: status_of(registry, "embedded").state is not RuntimeHealth.READY,
            within=30,
            what="the closed runtime leaves READY",
        )
        assert len(seen) == 1
    finally:
        await embedded.close()
