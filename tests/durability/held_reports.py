"""A real SQLite store whose commit reports can be held back: the writer commits, the Runtime is
told later (as a slow disk would make it), so the moment between a change in memory and its
commit stays open deterministically. Shared by the tests of committed reads."""

from __future__ import annotations

from pathlib import Path

from runtime_server.store import CommitListener, SqliteStore


class HeldReports(SqliteStore):
    """A real SQLite store whose commit reports can be held back and released."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, retention_interval=0.0)
        self.holding = False
        self.held: list[int] = []
        self._report: CommitListener | None = None

    def set_commit_listener(self, listener: CommitListener) -> None:
        self._report = listener

        def report(seq: int) -> None:
            if self.holding:
                self.held.append(seq)
            else:
                listener(seq)

        super().set_commit_listener(report)

    def release(self) -> None:
        self.holding = False
        for seq in self.held:
            assert self._report is not None  # a report is held only once a listener is set
            self._report(seq)
        self.held.clear()
