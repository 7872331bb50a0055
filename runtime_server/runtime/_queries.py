"""The Runtime's queries: snapshots and pages of what it holds (workers, runs, transcripts,
events, diagnostics, claims, usage), each bounded by count and by encoded size so a page always
fits one gRPC message. Nothing here changes state.

Every answer (NOT_FOUND included) shows only what is committed: it is taken from memory in one
step and returned once what it covers is committed (see _settle). :meth:`info` is the exception:
a synchronous snapshot for in-process callers that cannot wait (health, metrics, tests).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import replace

import engine
from runtime_server import errors, wire_size
from runtime_server.model import (
    Diagnostic,
    Page,
    Run,
    TranscriptEntry,
    TranscriptPage,
    Worker,
    WorkerState,
)
from runtime_server.runtime import _transcript_seq
from runtime_server.runtime._allocation import Claim
from runtime_server.runtime._core import RuntimeCore
from runtime_server.runtime._eventlog import Subscription
from runtime_server.runtime._host import WorkerHost
from runtime_server.runtime._info import (
    FEATURES,
    VERSION,
    EventsPage,
    RuntimeInfo,
)
from runtime_server.runtime._lifetime import UsageSummary
from runtime_server.runtime._observer import RuntimeCounters
from runtime_server.runtime._paging import decode_token, encode_token, fitting
from runtime_server.runtime._payload_filter import payload_kinds
from runtime_server.runtime._profiles import Profile
from runtime_server.runtime._request_limits import (
    check_id,
    check_page_token,
)
from runtime_server.runtime._storewatch import StoreState, StoreStateListener
from runtime_server.runtime._validation import (
    check_labels,
    check_unicode,
)
from runtime_server.runtime._waiting import wait_for_run


class RuntimeQueries(RuntimeCore):
    """Reads and paging over the Runtime's state (see the module doc)."""

    async def _held(self, worker_id: str) -> WorkerHost:
        """The worker's host; NOT_FOUND once everything appended is committed (see _settle; hot
        reads inline this: a coroutine per call costs about as much as the whole lookup)."""
        try:
            return self._host(worker_id)
        except errors.WorkerNotFound:
            await self._settled(self._unsettled())
            raise

    # --- management ---

    def counters(self) -> RuntimeCounters:
        """Monotonic counters since start, for operators' metrics."""
        log_ = self._require_log()
        return RuntimeCounters(
            events_committed=log_.committed_seq - log_.start_seq,
            subscriber_cuts={"lagging": log_.cuts_lagging, "shutdown": log_.cuts_shutdown},
        )

    @property
    def store_state(self) -> StoreState:
        """OK, FAILING (changes refused while the store retries) or DAMAGED (until a restart)."""
        return self._store_watch.state

    def watch_store(self, listener: StoreStateListener) -> None:
        """``listener(state)`` is called on the loop when the store's state changes (the gRPC
        layer switches health with it)."""
        self._store_watch.add_listener(listener)

    def info(self) -> RuntimeInfo:
        """A synchronous snapshot, for callers that cannot await (health, metrics): unlike
        :meth:`get_runtime` it does not wait, so it may count changes not yet committed."""
        log_ = self._require_log()
        by_state = dict.fromkeys(WorkerState, 0)
        active = queued = 0
        for host in self._hosts.values():
            by_state[host.worker.state] += 1
            active += host.active is not None
            queued += len(host.queue)
        claims, rw_claims = self._workspaces.allocations.counts()
        book = self._book
        return RuntimeInfo(
            runtime_id=self._runtime_id,
            state=self._state,
            version=VERSION,
            store_kind=self._store.kind,
            started_at=self._started_at,
            workers_by_state=by_state,
            active_runs=active,
            queued_runs=queued,
            last_seq=log_.committed_seq,
            oldest_seq=self._store.oldest_seq(),
            subscribers=log_.subscriber_count,
            limits=self._limits,
            # what this runtime can run (a provider of any of these kinds may be configured);
            # the configured providers show through the profiles
            provider_kinds=tuple(engine.PROVIDER_KINDS),
            profiles=tuple(sorted(self._config.profiles)),
            features=FEATURES,
            usage=book.usage,
            workspace_claims=claims,
            workspace_claims_read_write=rw_claims,
            worker_capabilities=self._workspaces.policy.allowed_capabilities,
            store_state=self._store_watch.state,
            store_error=self._store_watch.error,
            lifetime_usage=book.usage + book.deleted.usage,
            lifetime_runs=book.run_count + book.deleted.runs,
            memory_bytes=self._budget.held(),
        )

    async def get_runtime(self) -> RuntimeInfo:
        """Summary, state, version, store, worker counts, active runs, limits, capabilities and
        usage (of the workers held now, and lifetime) — answered once committed: then
        ``last_seq`` is the seq the counts are as of (subscribe after it for what follows)."""
        info = self.info()
        if seq := self._unsettled():
            await self._settled(seq)
            if self._require_log().committed_seq >= seq:
                info = replace(info, last_seq=seq)
        return info

    async def list_workspace_claims(
        self, *, worker_id: str = "", page_size: int = 0, page_token: str = ""
    ) -> Page[Claim]:
        """Claims of live workers (ordered by worker creation), optionally of one worker."""
        check_unicode(worker_id=worker_id, page_token=page_token)
        if worker_id:
            worker_id = (await self._held(worker_id)).worker.worker_id
        check_page_token(page_token, self._limits)
        # claims are weighed in characters: a quarter of the byte budget keeps 4-byte ones sound
        page = self._workspaces.claims_page(
            worker_id, self._page_size(page_size), page_token, self._page_bytes // 4
        )
        await self._settled(self._unsettled())  # a claim is taken with its worker's create
        return page

    async def list_profiles(self) -> tuple[Profile, ...]:
        """Every profile, by name."""
        return tuple(self._config.profiles[name] for name in sorted(self._config.profiles))

    async def list_diagnostics(
        self, *, page_size: int = 0, page_token: str = ""
    ) -> Page[Diagnostic]:
        """One page of the diagnostics ring, newest first (bounded by diagnostics_capacity; it
        survives restarts with a persistent store)."""
        check_unicode(page_token=page_token)
        page = self._diagnostics.page(self._page_size(page_size), page_token, self._page_bytes)
        await self._settled(self._log.unsettled_any() if self._log else 0)  # the ring: _settle
        return page

    # --- workers and runs ---

    async def get_worker(self, worker_id: str) -> Worker:
        """The worker as it is now, answered once committed (its state and usage change in
        memory a moment before their commit; see _settle)."""
        check_unicode(worker_id=worker_id)
        try:
            host = self._host(worker_id)
        except errors.WorkerNotFound:
            await self._settled(self._unsettled())  # a delete is reported once committed
            raise
        worker = host.snapshot()
        if seq := self._unsettled(worker_id):  # (what a store failure discarded too: _settle)
            await self._settled(seq)
        return worker

    async def list_workers(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Page[Worker]:
        """One page of workers by id; ``state``/``labels`` filter (a worker must carry all the
        labels)."""
        check_unicode(page_token=page_token, labels=labels)
        size = self._page_size(page_size)
        check_page_token(page_token, self._limits)
        after = decode_token(page_token, "w") if page_token else ""
        selector = dict(labels or {})
        check_labels(selector, self._limits)

        def keep(host: WorkerHost) -> bool:
            w = host.worker
            if state is not None and w.state is not state:
                return False
            return all(w.labels.get(k) == v for k, v in selector.items())

        matching = sorted(wid for wid, h in self._hosts.items() if keep(h))
        ids = [wid for wid in matching if wid > after]
        chunk = [self._hosts[w].snapshot() for w in ids[:size]]
        chunk = chunk[: fitting(chunk, wire_size.worker_size, self._page_bytes)]
        token = encode_token("w", chunk[-1].worker_id) if len(ids) > len(chunk) else ""
        # The page, its filter and its total cover every worker (created, changed or deleted):
        # answered once everything appended so far is committed.
        if seq := self._unsettled():
            await self._settled(seq)
        # total is the whole filtered list (as in ListDiagnostics), not what is left after the token
        return Page(tuple(chunk), token, len(matching))

    async def iter_workers(
        self,
        *,
        state: WorkerState | None = None,
        labels: Mapping[str, str] | None = None,
        page_size: int = 0,
    ) -> AsyncGenerator[Worker, None]:
        """Every matching worker, page by page."""
        token = ""
        while True:
            page = await self.list_workers(
                page_size=page_size, page_token=token, state=state, labels=labels
            )
            for worker in page.items:
                yield worker
            token = page.next_page_token
            if not token:
                return

    async def get_run(self, run_id: str) -> Run:
        """The run as it is now (finished runs beyond max_retained_runs are RUN_NOT_FOUND).

        Answered once its worker's changes so far are committed (see _settle): a run ends in
        memory a moment before the store commits its RunFinished, and a caller told it finished
        must find that durable, and covered by ``last_seq``. (Not while the store is failing:
        reads never wait for a store that may not come back; see _storewatch.)"""
        try:
            run = self._get_run(run_id)
        except errors.RunNotFound:
            await self._settled(self._unsettled())  # a delete is reported once committed
            raise
        if seq := self._unsettled(run.worker_id):  # (what a store failure discarded too: _settle)
            await self._settled(seq)
        return run

    # a timeout parameter (not only asyncio.timeout around the call): RuntimeClient's shape
    async def wait_run(self, run_id: str, *, timeout: float | None = None) -> Run:  # noqa: ASYNC109
        """Wait until the run is terminal and return it (once committed, as :meth:`get_run`);
        ``TimeoutError`` after ``timeout``."""
        async with asyncio.timeout(timeout):
            try:
                return await wait_for_run(self, run_id)
            except errors.RunNotFound:
                await self._settled(self._unsettled())  # a delete is reported once committed
                raise

    def _get_run(self, run_id: str) -> Run:
        check_unicode(run_id=run_id)
        check_id("run_id", run_id, self._limits)
        return self._book.get(run_id)

    # --- observation ---

    async def get_transcript(
        self, worker_id: str, *, page_size: int = 0, page_token: str = ""
    ) -> TranscriptPage:
        """One page of the worker's committed history, oldest first (older entries are read
        from the store), with the cursor to subscribe after (runtime._transcript_seq)."""
        check_unicode(worker_id=worker_id, page_token=page_token)
        log_ = self._require_log()
        host = await self._held(worker_id)
        size = min(self._page_size(page_size), self._limits.transcript_page_max)
        check_page_token(page_token, self._limits)
        start = int(decode_token(page_token, "t")) if page_token else 0
        window = host.transcript
        total = len(window)
        # Older pages come from the store; the newest from the worker's window.
        chunk = await self._transcripts.page(
            window, start, size, lambda: log_.wait_committed(log_.last_assigned_seq)
        )
        chunk = chunk[: fitting(chunk, wire_size.entry_size, self._page_bytes)]
        end = start + len(chunk)
        token = encode_token("t", str(end)) if end < total else ""
        resume = _transcript_seq.resume_cursor(  # no await since the page was read: one moment
            log_.newest_entry_seq.get(worker_id, 0), host.active is not None, log_.last_assigned_seq
        )
        # Answered once the worker's changes are committed, its cursor never past the committed
        # seq (a crash reuses the others). Idle, its last event is its last batch, committed then;
        # active, the cursor is its newest entry's seq, in that batch or before.
        if seq := self._unsettled(worker_id):
            await self._settled(seq)
        resume = min(resume, log_.committed_seq)
        return TranscriptPage(
            items=tuple(chunk), next_page_token=token, total_size=total, resume_after_seq=resume
        )

    async def iter_transcript(
        self, worker_id: str, *, page_size: int = 0
    ) -> AsyncGenerator[TranscriptEntry, None]:
        """The whole transcript, oldest first, page by page."""
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
        """Poll the log: committed events with seq > ``after_seq`` (0 = from the oldest
        retained), optionally of one worker."""
        check_unicode(worker_id=worker_id)
        log_ = self._require_log()
        if after_seq < 0:
            raise errors.InvalidArgument("after_seq", "must be >= 0")
        if worker_id:
            self._slot_or_known(worker_id)
        size = min(self._page_size(page_size), self._limits.event_batch_max)
        events = await log_.read(after_seq, size, worker_id)
        events = events[: fitting(events, wire_size.event_size, self._page_bytes)]
        return EventsPage(tuple(events), log_.committed_seq, self._store.oldest_seq())

    def subscribe(
        self,
        worker_id: str = "",
        after_seq: int = 0,
        from_now: bool = False,
        *,
        payload_types: Sequence[str] = (),
    ) -> Subscription:
        """Events with seq > ``after_seq`` (``from_now``: only new ones), replayed then live,
        optionally of one worker: iterate with ``async for`` (as the client's ``subscribe``). It
        ends when the Runtime closes and raises SubscriberLagging if it falls more than
        ``subscriber_buffer_events`` behind; ``close()`` it when leaving early. ``payload_types``
        keeps only those payload kinds (see runtime._payload_filter)."""
        check_unicode(worker_id=worker_id, payload_types=payload_types)
        kinds = payload_kinds(payload_types)
        log_ = self._require_log()
        if after_seq < 0:
            raise errors.InvalidArgument("after_seq", "must be >= 0")
        if worker_id:
            self._slot_or_known(worker_id)
        if log_.subscriber_count >= self._limits.max_subscribers:
            raise errors.TooManySubscribers(self._limits.max_subscribers)
        return log_.subscribe(
            after_seq=after_seq, worker_id=worker_id, from_now=from_now, kinds=kinds
        )

    def _slot_or_known(self, worker_id: str) -> None:
        # Events outlive a deleted worker (until retention), so a filter on any well-formed id is
        # fine; a malformed one is a caller mistake.
        check_id("worker_id", worker_id, self._limits)

    async def get_usage(self, worker_id: str = "") -> UsageSummary:
        """Usage of one worker (or of the whole runtime) and the number of runs it covers, with
        the runtime's lifetime totals (see :class:`UsageSummary`)."""
        check_unicode(worker_id=worker_id)
        if worker_id:
            try:
                host = self._host(worker_id)
            except errors.WorkerNotFound:
                await self._settled(self._unsettled())  # a delete is reported once committed
                raise
            usage = host.usage_so_far()
            summary = UsageSummary(usage, host.run_count, usage, host.run_count)
            if seq := self._unsettled(worker_id):
                await self._settled(seq)
            return summary
        book = self._book
        usage = book.usage
        for host in self._hosts.values():
            if host.active is not None:
                usage = usage + host.run_usage
        deleted = book.deleted
        summary = UsageSummary(
            usage, book.run_count, usage + deleted.usage, book.run_count + deleted.runs
        )
        if seq := self._unsettled():
            await self._settled(seq)
        return summary
