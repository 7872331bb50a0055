"""One recorded provider stream of the shared fixtures (what the engine conftest parametrizes its
fixtures with), in a module of its own so that tests can import the type: every ``conftest.py``
is the module ``conftest``, so a folder's conftest cannot be imported by that name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StreamFixture:
    path: Path

    @property
    def wire(self) -> str:
        return "anthropic" if self.path.suffix == ".txt" else "openai"

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def data(self) -> bytes:
        return self.path.read_bytes()
