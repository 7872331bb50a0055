"""Bundled local models (``local_model = "smollm2"`` on a provider), owned by the Runtime.

A local model's server starts lazily — on the first request of a run that uses it, so ``serve``
starts fast and a config that names a local model costs nothing until it is used — and stops when
the Runtime closes. One server per model name, shared by every provider and profile that names it
(llama.cpp serves both wire formats). Loading blocks for 1-3 s, so it runs in a thread; concurrent
first runs wait for the same start. A run cancelled while waiting leaves the start going for the
next run. When the model cannot start (xllamacpp or the GGUF missing, a load failure), the run
fails with :class:`engine.LocalModelError` (code ``LOCAL_MODEL_UNAVAILABLE``) and the next run
tries again; the Runtime itself never fails because of it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import engine

log = logging.getLogger(__name__)

ServerFactory = Callable[[str], engine.LocalModelServer]
Notify = Callable[[str, str], None]  # (code, message): LOCAL_MODEL_STARTED, LOCAL_MODEL_FAILED


class LocalModels:
    """The Runtime's local model servers, by model name."""

    def __init__(
        self,
        server_factory: ServerFactory = engine.LocalModelServer,
        notify: Notify | None = None,
    ) -> None:
        self._factory = server_factory
        self._notify: Notify = notify or (lambda _code, _message: None)
        self._servers: dict[str, engine.LocalModelServer] = {}
        self._starting: dict[str, asyncio.Task[engine.LocalModelServer]] = {}
        self._closed = False

    async def base_url(self, name: str, kind: str) -> str:
        """The base URL for a provider of ``kind`` on local model ``name``; starts it if needed."""
        server = self._servers.get(name)
        if server is None:
            if self._closed:
                raise engine.LocalModelError(f"local model {name!r}: the runtime is shutting down")
            task = self._starting.get(name)
            if task is None:
                task = asyncio.ensure_future(self._start(name))
                self._starting[name] = task
                task.add_done_callback(lambda _t: self._starting.pop(name, None))
            # shield: a cancelled run must not abort a start other runs (or the next one) wait for
            server = await asyncio.shield(task)
        return server.openai_base_url if kind == "openai_chat" else server.base_url

    async def _start(self, name: str) -> engine.LocalModelServer:
        server = self._factory(name)
        log.info("starting local model %s", name)
        try:
            await asyncio.to_thread(server.start)
        except engine.LocalModelError as exc:
            self._notify("LOCAL_MODEL_FAILED", exc.message)
            raise
        if self._closed:  # close() ran while the model loaded: do not leak the server
            await asyncio.to_thread(server.close)
            raise engine.LocalModelError(f"local model {name!r}: the runtime is shutting down")
        self._servers[name] = server
        self._notify("LOCAL_MODEL_STARTED", f"local model {name} serving on {server.base_url}")
        return server

    @property
    def running(self) -> tuple[str, ...]:
        return tuple(sorted(self._servers))

    async def aclose(self) -> None:
        """Stop every server (and wait out starts in flight). Idempotent."""
        self._closed = True
        starting = list(self._starting.values())
        if starting:
            await asyncio.wait(starting)
        servers, self._servers = list(self._servers.values()), {}
        for server in servers:
            await asyncio.to_thread(server.close)  # joins the server's threads: not on the loop


class LocalModelProvider:
    """A provider on a local model: resolves the server's URL (starting it) at the first request,
    then delegates to the provider ``build(base_url)`` makes."""

    def __init__(
        self,
        kind: str,
        model: str,
        models: LocalModels,
        build: Callable[[str], engine.Provider],
    ) -> None:
        self._kind = kind
        self._model = model
        self._models = models
        self._build = build
        self._inner: engine.Provider | None = None

    @property
    def kind(self) -> str:
        return self._kind

    async def stream(self, request: engine.ModelRequest) -> AsyncIterator[engine.StreamEvent]:
        inner = self._inner
        if inner is None:
            base_url = await self._models.base_url(self._model, self._kind)
            inner = self._inner = self._build(base_url)
        events = inner.stream(request)
        try:
            async for event in events:
                yield event
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()  # close the HTTP stream now, also on cancellation

    async def aclose(self) -> None:
        if self._inner is not None:
            await self._inner.aclose()
