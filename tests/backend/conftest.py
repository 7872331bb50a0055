"""The Backend's HTTP API tests share the ``console`` fixture with the browser tests."""

from __future__ import annotations

from backend_serving import console  # noqa: F401 - the fixture
