"""Fixtures for the RuntimeRegistry tests (the helpers live in registry_support.py: real serve
subprocesses on SQLite, registries with short probe timings, a blackhole listener)."""

from __future__ import annotations

from registry_support import registry_factory, remote

__all__ = ["registry_factory", "remote"]
