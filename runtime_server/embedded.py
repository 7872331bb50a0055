"""``EmbeddedRuntime``: an in-process handle over a :class:`~runtime_server.runtime.Runtime` that
speaks the one public vocabulary — the client's models and the client's error classes.

It has exactly :class:`runtime_client.RuntimeClient`'s public methods (names, parameters, return
types; a test compares their ``inspect.signature``), so code written against a ``RuntimeHandle``
drives an embedded Runtime and a remote one alike. It runs on the caller's event loop and opens
no socket. What each method returns or raises is what ``RuntimeClient`` would return or raise for
the same call against a served Runtime in the same state (a behavioural test runs the same
scenarios both ways):

- values are converted by :mod:`runtime_server._embedded_convert`, which drops what the wire
  drops and quantises times as a protobuf Timestamp does, so embedded and remote answers
  compare equal (``Event.raw`` is ``None`` here: there is no wire message);
- a domain error becomes the client class of the same reason, with the same status code,
  message and metadata (both sides cut echoed values by
  :func:`runtime_server.wire_errors.wire_form`), raised ``from`` the domain error; an
  unexpected exception becomes a generic :class:`~runtime_client.InternalError`, recorded as a
  diagnostic, as the gRPC edge does;
- request values the gRPC edge would check (a workspace without a root) are checked alike, and
  values the client itself would refuse before sending (an unknown ``busy_policy``) raise the same
  ``ValueError``.

Deliberate differences, all about the transport: no ``timeout`` per call (nothing can hang on a
network), no retries (nothing to retry), ``auth_required`` is False, and ``subscribe`` does not
wait for a closed Runtime to come back: an in-process Runtime that closed never returns, so the
stream ends with ``RuntimeDraining`` (carrying ``last_seq``) even with ``resume``.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from runtime_client import (
    Accepted,
    BusyPolicy,
    ConfigBundleRef,
    Created,
    Diagnostic,
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
from runtime_client import errors as cerr
from runtime_client.errors import RuntimeServiceError
from runtime_server import _embedded_convert as cv
from runtime_server import errors, wire_errors
from runtime_server._embedded_bundles import EmbeddedBundleCalls
from runtime_server._embedded_streams import EmbeddedStreamCalls
from runtime_server.model import DiagnosticLevel
from runtime_server.runtime import Config, Runtime

if TYPE_CHECKING:
    from typing import Self

    from runtime_server.store import Store

__all__ = ["EmbeddedRuntime"]

log = logging.getLogger(__name__)

_INTERNAL_MESSAGE = "internal error (recorded in the runtime's diagnostics)"


def client_error(exc: errors.RuntimeServiceError) -> RuntimeServiceError:
    """The client error a remote caller would receive for the domain error ``exc``."""
    wire = wire_errors.wire_form(exc)
    return cerr.from_status(cerr.StatusCode(wire.code), wire.message, wire.reason, wire.metadata)


class EmbeddedRuntime(EmbeddedStreamCalls, EmbeddedBundleCalls):
    """A :class:`~runtime_client.RuntimeHandle` over an in-process Runtime.

    ``EmbeddedRuntime(runtime)`` wraps a Runtime the caller owns and has started (``close`` leaves
    it running); ``await EmbeddedRuntime.open(config, store=...)`` creates and starts one that the
    handle owns (``close`` closes it). Use as ``async with`` either way.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._owns = False
        self._closed = False

    @classmethod
    async def open(
        cls, config: Config | None = None, *, store: Store | None = None, **runtime_kwargs: Any
    ) -> EmbeddedRuntime:
        """Create and start a Runtime (``runtime_kwargs``: the Runtime's other keyword arguments,
        e.g. ``limits``, ``policy``) owned by the returned handle."""
        runtime = Runtime(config=config, store=store, **runtime_kwargs)
        await runtime.start()
        self = cls(runtime)
        self._owns = True
        return self

    @property
    def runtime(self) -> Runtime:
        """The wrapped Runtime (its domain values; for operators' hooks, metrics, tests)."""
        return self._runtime

    async def close(self, grace: float | None = None) -> None:
        """Close the Runtime if this handle owns it (``grace``: seconds active runs may take to
        finish). Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        if self._owns:
            await self._runtime.close(grace or 0.0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        """The embedded counterpart of the gRPC edge's unary wrapper: domain errors become the
        client's classes, anything else a generic InternalError recorded as a diagnostic."""
        try:
            yield
        except errors.RuntimeServiceError as exc:
            raise client_error(exc) from exc
        except Exception as exc:
            # A bug, not the caller's mistake: logged with its traceback and recorded, as the
            # servicers do (the message says nothing of it; the cause keeps it for debugging).
            log.exception("unexpected error in an embedded call")
            self._runtime.diagnose(
                DiagnosticLevel.ERROR, "RPC_INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"
            )
            raise cerr.from_status(
                cerr.StatusCode.INTERNAL, _INTERNAL_MESSAGE, "INTERNAL", {}
            ) from exc

    # --- ManagementService --------------------------------------------------------------------

    async def get_runtime(self) -> RuntimeInfo:
        with self._translated():
            return cv.runtime_info(await self._runtime.get_runtime())

    async def list_diagnostics(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> Page[Diagnostic]:
        """Newest first."""
        cv.int32_in(page_size)
        with self._translated():
            page = await self._runtime.list_diagnostics(page_size=page_size, page_token=page_token)
            return cv.page(page, cv.diagnostic)

    async def list_profiles(self) -> tuple[Profile, ...]:
        with self._translated():
            return tuple(cv.profile(p) for p in await self._runtime.list_profiles())

    async def list_workspace_claims(
        self, *, worker_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> Page[WorkspaceClaim]:
        """The allocation manager's claims: paths live workers hold, read-only or read-write."""
        cv.int32_in(page_size)
        with self._translated():
            page = await self._runtime.list_workspace_claims(
                worker_id=worker_id, page_size=page_size, page_token=page_token
            )
            return cv.page(page, cv.workspace_claim)

    # --- CatalogService -----------------------------------------------------------------------

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
        """Create a worker (profile "" = the built-in ``echo``); see RuntimeClient.create_worker."""
        with self._translated():
            created = await self._runtime.create_worker(
                worker_id=worker_id,
                profile=profile,
                display_name=display_name,
                labels=cv.labels_in(labels),
                request_id=request_id,
                workspace=cv.workspace_in(workspace),
                config_bundle=cv.config_bundle_in(config_bundle),
                initial_input=initial_input,
                capabilities=cv.strings_in(capabilities),
            )
            return cv.created(created)

    async def get_worker(self, worker_id: str) -> Worker:
        with self._translated():
            return cv.worker(await self._runtime.get_worker(worker_id))

    async def list_workers(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Page[Worker]:
        """One page; ``state``/``labels`` filter (a worker must carry all the labels)."""
        # outside the translation: the client refuses these itself, before sending
        wanted = cv.worker_state_in(state)
        cv.int32_in(page_size)
        with self._translated():
            page = await self._runtime.list_workers(
                page_size=page_size,
                page_token=page_token,
                state=wanted,
                labels=cv.labels_in(labels),
            )
            return cv.page(page, cv.worker)

    async def iter_workers(
        self,
        *,
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> AsyncGenerator[Worker, None]:
        """Every matching worker, fetching pages as needed."""
        token = ""
        while True:
            page = await self.list_workers(
                page_size=page_size, page_token=token, state=state, labels=labels
            )
            for w in page.items:
                yield w
            token = page.next_page_token
            if not token:
                return

    async def stop_worker(self, worker_id: str, *, reason: str = "") -> Worker:
        """Cancel the active run, drop queued inputs; idempotent."""
        with self._translated():
            return cv.worker(await self._runtime.stop_worker(worker_id, reason=reason))

    async def delete_worker(self, worker_id: str) -> None:
        with self._translated():
            await self._runtime.delete_worker(worker_id)

    # --- InteractionService -------------------------------------------------------------------

    async def send_input(
        self,
        worker_id: str,
        text: str,
        *,
        request_id: str = "",
        busy_policy: BusyPolicy = BusyPolicy.REJECT,
    ) -> Accepted:
        """Start (or queue) a run; see RuntimeClient.send_input."""
        policy = cv.busy_policy_in(busy_policy)  # outside: the client refuses a bad value itself
        with self._translated():
            accepted = await self._runtime.send_input(
                worker_id, text, request_id=request_id, busy_policy=policy
            )
            return cv.accepted(accepted)

    async def cancel_run(self, run_id: str) -> Run:
        """Idempotent; the run ends CANCELLED unless it already finished."""
        with self._translated():
            return cv.run(await self._runtime.cancel_run(run_id))

    async def get_run(self, run_id: str) -> Run:
        with self._translated():
            return cv.run(await self._runtime.get_run(run_id))

    # --- ObservationService -------------------------------------------------------------------

    async def get_transcript(
        self, worker_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> TranscriptPage:
        cv.int32_in(page_size)
        with self._translated():
            page = await self._runtime.get_transcript(
                worker_id, page_size=page_size, page_token=page_token
            )
            return cv.transcript_page(page)

    async def iter_transcript(
        self, worker_id: str, *, page_size: int = 0
    ) -> AsyncGenerator[TranscriptEntry, None]:
        """The whole transcript, oldest first, fetching pages as needed."""
        token = ""
        while True:
            page = await self.get_transcript(worker_id, page_size=page_size, page_token=token)
            for entry in page.items:
                yield entry
            token = page.next_page_token
            if not token:
                return

    async def list_events(
        self, *, after_seq: int = 0, worker_id: str = "", page_size: int = 0
    ) -> EventsPage:
        """Poll the log: events with seq > ``after_seq`` (0 = from the oldest retained)."""
        cv.uint64_in(after_seq)
        cv.int32_in(page_size)
        with self._translated():
            page = await self._runtime.list_events(
                after_seq=after_seq, worker_id=worker_id, page_size=page_size
            )
            return cv.events_page(page, after_seq)

    async def get_usage(self, worker_id: str = "") -> UsageSummary:
        """Usage of one worker, or of the whole Runtime when ``worker_id`` is empty."""
        with self._translated():
            return cv.usage_summary(await self._runtime.get_usage(worker_id))
