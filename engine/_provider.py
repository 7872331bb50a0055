"""The provider seam: one method that streams a model's answer as :data:`StreamEvent`s."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Protocol

from engine._types import ModelRequest, StreamEvent


class Provider(Protocol):
    """A model behind some wire format. ``stream`` must close its HTTP stream when the iterator is
    closed or cancelled, and raise :class:`engine.ProviderError` subclasses for failures."""

    @property
    def kind(self) -> str: ...

    def stream(self, request: ModelRequest) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...
