"""``RuntimeHandle``: one Runtime, whether it is in this process or behind gRPC.

A structural protocol with exactly the public coroutine methods of :class:`RuntimeClient` —
same names, parameters and return types (the client's models) — so code written against a
handle runs unchanged over a remote runtime (``RuntimeClient``) and an embedded one
(``runtime_server.EmbeddedRuntime``, which returns the same models and raises the same
errors). A test compares this protocol's method set and signatures with ``RuntimeClient``'s.

Decisions: it is a ``typing.Protocol`` rather than a base class, so ``RuntimeClient`` and the
embedded handle stay independent (the client never imports the server); it is
``runtime_checkable`` only for friendly errors at registration, not for dispatch.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

from runtime_client._bundles import ConfigBundle, ConfigBundleContent, ConfigBundlePut
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
from runtime_client.errors import RuntimeServiceError

__all__ = ["RuntimeHandle"]


@runtime_checkable
class RuntimeHandle(Protocol):
    """Every RPC of a Runtime, plus ``subscribe``, ``wait_run`` and ``close`` (see
    :class:`runtime_client.RuntimeClient` for what each does)."""

    async def get_runtime(self) -> RuntimeInfo: ...

    async def list_diagnostics(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> Page[Diagnostic]: ...

    async def list_profiles(self) -> tuple[Profile, ...]: ...

    async def list_workspace_claims(
        self, *, worker_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> Page[WorkspaceClaim]: ...

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
    ) -> Created: ...

    async def get_worker(self, worker_id: str) -> Worker: ...

    async def list_workers(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Page[Worker]: ...

    def iter_workers(
        self,
        *,
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> AsyncGenerator[Worker, None]: ...

    async def stop_worker(self, worker_id: str, *, reason: str = "") -> Worker: ...

    async def delete_worker(self, worker_id: str) -> None: ...

    async def send_input(
        self,
        worker_id: str,
        text: str,
        *,
        request_id: str = "",
        busy_policy: BusyPolicy = BusyPolicy.REJECT,
    ) -> Accepted: ...

    async def cancel_run(self, run_id: str) -> Run: ...

    async def get_run(self, run_id: str) -> Run: ...

    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run: ...  # noqa: ASYNC109

    async def get_transcript(
        self, worker_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> TranscriptPage: ...

    def iter_transcript(
        self, worker_id: str, *, page_size: int = 0
    ) -> AsyncGenerator[TranscriptEntry, None]: ...

    async def list_events(
        self, *, after_seq: int = 0, worker_id: str = "", page_size: int = 0
    ) -> EventsPage: ...

    async def get_usage(self, worker_id: str = "") -> UsageSummary: ...

    def subscribe(
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
    ) -> AsyncGenerator[Event, None]: ...

    async def put_bundle(
        self,
        id: str,
        content: bytes,
        *,
        media_type: str = "",
        expected_digest: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> ConfigBundlePut: ...

    async def get_bundle(
        self, id: str, digest: str, *, include_content: bool = False
    ) -> ConfigBundleContent: ...

    async def list_bundles(
        self, *, page_size: int = 0, page_token: str = "", id: str = ""
    ) -> Page[ConfigBundle]: ...

    async def delete_bundle(self, id: str, digest: str) -> None: ...

    async def close(self, grace: float | None = None) -> None: ...
