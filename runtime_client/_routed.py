"""The handle ``RuntimeRegistry.handle(runtime_id)`` returns: the runtime's own handle behind the
registry's routing check.

Every call first checks the registry's state of the runtime — without touching the network — and
fails at once with RuntimeUnavailable (UNREACHABLE, AUTH_FAILED, still CONNECTING) or
RuntimeIdentityChanged; otherwise it goes to the runtime and its errors pass through as the same
classes. A call that finds the connection gone tells the health loop to look now. The handle
stays valid for the registry's lifetime (it follows a recreated channel); ``close`` is a no-op,
the registry owns the connection.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence

from runtime_client._client import DEFAULT_BACKOFF, Backoff
from runtime_client._models import (
    Accepted,
    BusyPolicy,
    ConfigBundleRef,
    Created,
    Diagnostic,
    Event,
    EventsPage,
    Page,
    Profile,
    Run,
    RuntimeInfo,
    TranscriptEntry,
    TranscriptPage,
    UsageSummary,
    Worker,
    WorkerState,
    Workspace,
    WorkspaceClaim,
)
from runtime_client._registry_types import RuntimeHealth
from runtime_client._routed_bundles import RoutedBundleCalls
from runtime_client._runtime_entry import RuntimeEntry
from runtime_client.errors import DeadlineExceeded, RuntimeServiceError, Unavailable

__all__ = ["RoutedHandle"]

_CUT = (Unavailable, DeadlineExceeded)


class RoutedHandle(RoutedBundleCalls):
    """A :class:`RuntimeHandle` for one registered runtime (see the module docstring)."""

    __slots__ = ("_entry",)

    def __init__(self, entry: RuntimeEntry) -> None:
        self._entry = entry

    @property
    def runtime_id(self) -> str:
        return self._entry.runtime_id or ""

    async def get_runtime(self) -> RuntimeInfo:
        h = self._entry.check()
        try:
            return await h.get_runtime()
        except _CUT:
            self._entry.poke()
            raise

    async def list_diagnostics(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> Page[Diagnostic]:
        h = self._entry.check()
        try:
            return await h.list_diagnostics(page_size=page_size, page_token=page_token)
        except _CUT:
            self._entry.poke()
            raise

    async def list_profiles(self) -> tuple[Profile, ...]:
        h = self._entry.check()
        try:
            return await h.list_profiles()
        except _CUT:
            self._entry.poke()
            raise

    async def list_workspace_claims(
        self, *, worker_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> Page[WorkspaceClaim]:
        h = self._entry.check()
        try:
            return await h.list_workspace_claims(
                worker_id=worker_id, page_size=page_size, page_token=page_token
            )
        except _CUT:
            self._entry.poke()
            raise

    async def create_worker(
        self,
        *,
        worker_id: str = "",
        profile: str = "",
        display_name: str = "",
        labels: Mapping[str, str] | None = None,
        request_id: str = "",
        workspace: Workspace | None = None,
        config_bundle: ConfigBundleRef | None = None,
        initial_input: str = "",
        capabilities: Sequence[str] = (),
    ) -> Created:
        entry = self._entry
        h = entry.check()
        try:
            created = await h.create_worker(
                worker_id=worker_id,
                profile=profile,
                display_name=display_name,
                labels=labels,
                request_id=request_id,
                workspace=workspace,
                config_bundle=config_bundle,
                initial_input=initial_input,
                capabilities=capabilities,
            )
        except _CUT:
            entry.poke()
            raise
        entry.cache.upsert(created.worker, created.seq)
        return created

    async def get_worker(self, worker_id: str) -> Worker:
        h = self._entry.check()
        try:
            return await h.get_worker(worker_id)
        except _CUT:
            self._entry.poke()
            raise

    async def list_workers(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Page[Worker]:
        h = self._entry.check()
        try:
            return await h.list_workers(
                page_size=page_size, page_token=page_token, state=state, labels=labels
            )
        except _CUT:
            self._entry.poke()
            raise

    async def iter_workers(
        self,
        *,
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> AsyncGenerator[Worker, None]:
        h = self._entry.check()
        async for worker in h.iter_workers(state=state, labels=labels, page_size=page_size):
            yield worker

    async def stop_worker(self, worker_id: str, *, reason: str = "") -> Worker:
        h = self._entry.check()
        try:
            return await h.stop_worker(worker_id, reason=reason)
        except _CUT:
            self._entry.poke()
            raise

    async def delete_worker(self, worker_id: str) -> None:
        h = self._entry.check()
        try:
            await h.delete_worker(worker_id)
        except _CUT:
            self._entry.poke()
            raise

    async def send_input(
        self,
        worker_id: str,
        text: str,
        *,
        request_id: str = "",
        busy_policy: BusyPolicy = BusyPolicy.REJECT,
    ) -> Accepted:
        h = self._entry.check()
        try:
            return await h.send_input(
                worker_id, text, request_id=request_id, busy_policy=busy_policy
            )
        except _CUT:
            self._entry.poke()
            raise

    async def cancel_run(self, run_id: str) -> Run:
        h = self._entry.check()
        try:
            return await h.cancel_run(run_id)
        except _CUT:
            self._entry.poke()
            raise

    async def get_run(self, run_id: str) -> Run:
        h = self._entry.check()
        try:
            return await h.get_run(run_id)
        except _CUT:
            self._entry.poke()
            raise

    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        h = self._entry.check()
        return await h.wait_run(run_id, timeout=timeout)

    async def get_transcript(
        self, worker_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> TranscriptPage:
        h = self._entry.check()
        try:
            return await h.get_transcript(worker_id, page_size=page_size, page_token=page_token)
        except _CUT:
            self._entry.poke()
            raise

    async def iter_transcript(
        self, worker_id: str, *, page_size: int = 0
    ) -> AsyncGenerator[TranscriptEntry, None]:
        h = self._entry.check()
        async for entry in h.iter_transcript(worker_id, page_size=page_size):
            yield entry

    async def list_events(
        self, *, after_seq: int = 0, worker_id: str = "", page_size: int = 0
    ) -> EventsPage:
        h = self._entry.check()
        try:
            return await h.list_events(
                after_seq=after_seq, worker_id=worker_id, page_size=page_size
            )
        except _CUT:
            self._entry.poke()
            raise

    async def get_usage(self, worker_id: str = "") -> UsageSummary:
        h = self._entry.check()
        try:
            return await h.get_usage(worker_id)
        except _CUT:
            self._entry.poke()
            raise

    async def subscribe(
        self,
        worker_id: str = "",
        after_seq: int = 0,
        from_now: bool = False,
        *,
        resume: bool = True,
        include_heartbeats: bool = False,
        max_reconnects: int | None = 10,
        backoff: Backoff = DEFAULT_BACKOFF,
        batched: bool = True,
        on_retry: Callable[[RuntimeServiceError, float], object] | None = None,
        payload_types: Sequence[str] = (),
    ) -> AsyncGenerator[Event, None]:
        """The runtime's own subscription. Its reconnects do not re-check identity: for a stream
        that must survive restarts, use ``RuntimeRegistry.subscribe``, which does. Events stop
        (RuntimeIdentityChanged) as soon as the registry knows the identity changed."""
        entry = self._entry
        h = entry.check()
        stream = h.subscribe(
            worker_id,
            after_seq,
            from_now,
            resume=resume,
            include_heartbeats=include_heartbeats,
            max_reconnects=max_reconnects,
            backoff=backoff,
            batched=batched,
            on_retry=on_retry,
            payload_types=payload_types,
        )
        try:
            async for event in stream:
                if entry.state is RuntimeHealth.IDENTITY_CHANGED:
                    raise entry.unusable()
                yield event
        finally:
            await stream.aclose()

    async def close(self, grace: float | None = None) -> None:
        """Nothing to do: the registry owns the connection."""
