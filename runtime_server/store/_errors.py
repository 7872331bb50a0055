"""Errors of the store package. Both are :class:`runtime_server.errors.StoreFailure` (reason
``STORE_FAILURE``), so the gRPC edge maps them without knowing the store exists.

::

    StoreFailure (runtime_server.errors)   the store cannot commit: the writer failed (disk full,
    │                                      I/O error); raised by write(), flush() and close()
    │                                      while failing, and by reads that SQLite refused
    ├── StoreOpenError                     open() refused a file (not a database, corrupt, not
    │                                      ours, newer schema, lost seqs); the file is left
    │                                      untouched
    └── StoreCorrupt                       the file turned out damaged while serving: permanent,
                                           nothing more is written to it (restart to check it)
"""

from __future__ import annotations

from pathlib import Path

from runtime_server.errors import StoreFailure


class StoreOpenError(StoreFailure):
    """``open()`` refused ``path`` because of ``problem``; nothing was written to the file."""

    def __init__(self, path: Path | str, problem: str) -> None:
        problem = " ".join(problem.split())  # one line, whatever SQLite said
        super().__init__(f"cannot open store {str(path)!r}: {problem}", path=str(path))
        self.path = str(path)
        self.problem = problem


class StoreCorrupt(StoreFailure):
    """The file at ``path`` is damaged (found by a read or a write while serving): the store
    fails for good and never writes to it again."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(
            f"SQLite store {str(path)!r} is damaged: {problem}; nothing more is written to it "
            "(restart to run the start-up checks)",
            path=str(path),
        )
        self.path = str(path)
        self.problem = problem


__all__ = ["StoreCorrupt", "StoreFailure", "StoreOpenError"]
