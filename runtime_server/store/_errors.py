"""Errors of the store package. Both are :class:`runtime_server.errors.StoreFailure` (reason
``STORE_FAILURE``), so the gRPC edge maps them without knowing the store exists.

::

    StoreFailure (runtime_server.errors)   the store cannot commit: the writer failed (disk full,
    │                                      I/O error); raised by write(), flush() and close()
    └── StoreOpenError                     open() refused a file (not a database, corrupt, not
                                           ours, newer schema); the file is left untouched
"""

from __future__ import annotations

from pathlib import Path

from runtime_server.errors import StoreFailure


class StoreOpenError(StoreFailure):
    """``open()`` refused ``path`` because of ``problem``; nothing was written to the file."""

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"cannot open store {str(path)!r}: {problem}", path=str(path))
        self.path = str(path)
        self.problem = problem


__all__ = ["StoreFailure", "StoreOpenError"]
