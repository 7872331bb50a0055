"""Shared fixtures of the engine tests.

- ``stream_fixture`` / ``openai_fixture`` / ``anthropic_fixture``: parametrized over the recorded
  provider streams in ``../shared/fixtures/provider-streams`` (read in place, never copied).
- ``llama``: one llama.cpp server (SmolLM2-135M) for the whole session, see
  :class:`engine.testing.LlamaServer`.

A missing fixture directory or model is a skip locally and a failure when ``CI`` is set.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from engine.testing import LlamaServer, llama_unavailable

# tests/engine/conftest.py -> repository root -> its sibling "shared"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
STREAMS = SHARED / "fixtures" / "provider-streams"
IN_CI = os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def missing(reason: str) -> None:
    """Skip locally; fail in CI, where everything must be installed and present."""
    if IN_CI:
        pytest.fail(f"{reason} (CI is set: this is a failure, not a skip)")
    pytest.skip(reason)


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


def _recorded(wire: str | None) -> list[StreamFixture]:
    files = sorted(STREAMS.glob("openai-python/*.sse")) + sorted(
        STREAMS.glob("anthropic-sdk-python/*.txt")
    )
    found = [StreamFixture(p) for p in files]
    return [f for f in found if wire is None or f.wire == wire]


_PARAMS = {"stream_fixture": None, "openai_fixture": "openai", "anthropic_fixture": "anthropic"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for argument, wire in _PARAMS.items():
        if argument in metafunc.fixturenames:
            found = _recorded(wire)
            params: list[StreamFixture | None] = list(found) or [None]
            ids = [f.name for f in found] or ["recorded-streams-missing"]
            metafunc.parametrize(argument, params, ids=ids, indirect=True)


def _fixture_param(request: pytest.FixtureRequest) -> StreamFixture:
    param: StreamFixture | None = request.param
    if param is None:
        missing(f"recorded provider streams not found in {STREAMS}")
    assert param is not None
    return param


@pytest.fixture
def stream_fixture(request: pytest.FixtureRequest) -> StreamFixture:
    return _fixture_param(request)


@pytest.fixture
def openai_fixture(request: pytest.FixtureRequest) -> StreamFixture:
    return _fixture_param(request)


@pytest.fixture
def anthropic_fixture(request: pytest.FixtureRequest) -> StreamFixture:
    return _fixture_param(request)


@pytest.fixture(scope="session")
def llama() -> Iterator[LlamaServer]:
    reason = llama_unavailable()
    if reason is not None:
        missing(reason)
    with LlamaServer() as server:
        yield server
