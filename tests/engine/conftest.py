"""Shared fixtures of the engine tests.

- ``stream_fixture`` / ``openai_fixture`` / ``anthropic_fixture``: parametrized over the recorded
  provider streams in ``../shared/fixtures/provider-streams`` (read in place, never copied).
- ``client``: an ``httpx.AsyncClient`` for the providers under test (here ``client`` is the
  provider seam's HTTP client, not the RuntimeClient of the root conftest).
- ``llama`` (root conftest): one llama.cpp server (SmolLM2-135M) for the whole session.

A missing fixture directory or model is a skip locally and a failure when ``CI`` is set.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from recorded_streams import StreamFixture
from serving import missing

# tests/engine/conftest.py -> repository root -> its sibling "shared"
SHARED = Path(__file__).resolve().parents[2].parent / "shared"
STREAMS = SHARED / "fixtures" / "provider-streams"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as c:
        yield c


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
