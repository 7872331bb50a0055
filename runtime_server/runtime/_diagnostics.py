"""The diagnostics ring: what operators should know (a crashed run, a store failure, a local model
that would not start), newest kept, bounded by ``limits.diagnostics_capacity``.

Each diagnostic is numbered, logged, published as an event and stored (``PutDiagnostic`` keeps
the newest capacity of them), so the ring survives restarts with a persistent store."""

from __future__ import annotations

import logging
from collections import deque

from runtime_server import wire_size
from runtime_server.model import Diagnostic, DiagnosticLevel, Limits, Page, now
from runtime_server.runtime._eventlog import EventLog
from runtime_server.runtime._observer import RuntimeObserver
from runtime_server.runtime._paging import decode_token, encode_token, fitting
from runtime_server.runtime._request_limits import check_page_token
from runtime_server.store import PutDiagnostic

log = logging.getLogger(__name__)

DIAGNOSTIC_MESSAGE_CHARS = 4096

_LOG_LEVELS = {"INFO": logging.INFO, "WARNING": logging.WARNING}


class Diagnostics:
    """The numbered ring, written through the event log once it exists."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._ring: deque[tuple[int, Diagnostic]] = deque(
            maxlen=max(1, limits.diagnostics_capacity)
        )
        self._counter = 0
        self.log: EventLog | None = None  # set by start(); before it, diagnostics stay in memory
        self.observer: RuntimeObserver | None = None

    def load(self, stored: list[tuple[int, Diagnostic]]) -> None:
        """The ring as the store kept it (at start)."""
        for number, diag in stored:
            self._ring.append((number, diag))  # the deque keeps the newest capacity
            self._counter = max(self._counter, number)

    def record(
        self, level: DiagnosticLevel, code: str, message: str, worker_id: str = "", run_id: str = ""
    ) -> None:
        """Number, keep, publish, store and log one diagnostic."""
        # a diagnostic is stored and sent in pages and events: its text (an exception's, a
        # provider's) is cut to a size that can never crowd a message
        if len(message) > DIAGNOSTIC_MESSAGE_CHARS:
            message = message[: DIAGNOSTIC_MESSAGE_CHARS - 1] + "\u2026"
        diag = Diagnostic(level, code, message, now(), worker_id, run_id)
        if self.observer is not None:
            self.observer.diagnostic(level.value, code)
        self._counter += 1
        self._ring.append((self._counter, diag))
        if self.log is not None and not self.log.store_closed:  # never write a closed store
            keep = max(1, self._limits.diagnostics_capacity)
            self.log.append(worker_id, run_id, [diag], [PutDiagnostic(self._counter, diag, keep)])
        log.log(_LOG_LEVELS.get(level.value, logging.ERROR), "%s: %s", code, message)

    def page(self, size: int, page_token: str, page_bytes: int) -> Page[Diagnostic]:
        """One page, newest first, of at most ``size`` diagnostics and ``page_bytes``."""
        check_page_token(page_token, self._limits)
        newest_first = list(reversed(self._ring))
        start = 0
        if page_token:
            before = decode_token(page_token, "d")
            start = next(
                (i for i, (n, _) in enumerate(newest_first) if n < before), len(newest_first)
            )
        chunk = newest_first[start : start + size]
        chunk = chunk[: fitting(chunk, lambda d: wire_size.diagnostic_size(d[1]), page_bytes)]
        more = start + len(chunk) < len(newest_first)
        token = encode_token("d", chunk[-1][0]) if more and chunk else ""
        return Page(tuple(d for _, d in chunk), token, len(newest_first))
