"""Where the Runtime's providers come from: the provider factory, kept out of the core.

The Runtime asks a :data:`ProviderFactory` for a provider per profile and caches it
(:class:`Providers`). It never builds HTTP clients itself: the default factory,
:class:`HttpProviderFactory`, is an async resource the Runtime puts on its resource stack at start
— one pooled ``httpx`` client shared by every HTTP provider, and the bundled local models — and
releases at close. The client itself is created at the first provider built: creating one loads
the TLS trust store (tens of milliseconds of CPU, measured: start->SERVING went 1.5x slower), which
a Runtime that never calls an HTTP provider (echo only, tests, an idle restart) need not pay. A
factory passed to the Runtime is the caller's, and stays open.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx

import engine
from runtime_server.model import Worker
from runtime_server.runtime._backpressure import backpressured
from runtime_server.runtime._local import LocalModelProvider, LocalModels
from runtime_server.runtime._observer import MeteredProvider, RuntimeObserver
from runtime_server.runtime._profiles import Profile

ProviderFactory = Callable[[Profile], engine.Provider]
ToolsFactory = Callable[[Profile, Worker], engine.ToolRegistry]


class HttpProviderFactory:
    """The default :data:`ProviderFactory`: engine providers over one pooled ``httpx`` client
    (created at the first provider, closed by :meth:`aclose`); a ``local_model`` provider gets its
    base_url from the local model server, started at first use (see ``_local``)."""

    def __init__(self, local: LocalModels) -> None:
        self.local = local
        self._client: httpx.AsyncClient | None = None
        self._closed = False

    async def aclose(self) -> None:
        """Close the shared client (if one was created); no provider is built after. Idempotent."""
        self._closed = True
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    def _shared_client(self) -> httpx.AsyncClient:
        if self._closed:
            raise engine.ConfigurationError("the runtime's HTTP client is closed")
        if self._client is None:
            # Provider timeouts are per stream (idle timeout); the client's own are generous.
            self._client = httpx.AsyncClient(timeout=httpx.Timeout(600.0, connect=10.0))
        return self._client

    def __call__(self, profile: Profile) -> engine.Provider:
        client = self._shared_client()
        p = profile.provider

        def make(base_url: str) -> engine.Provider:
            return engine.make_provider(
                p.kind,
                client=client,
                base_url=base_url,
                api_key_env=p.api_key_env or None,
                extra_headers=p.headers,
                idle_timeout_s=p.timeout_s,
                echo_delay_s=float(profile.options.get("delay_ms", 0)) / 1000.0,
                reasoning_field=p.reasoning_field,
                request_deadline_s=profile.request_deadline_s,
            )

        if p.local_model:
            return LocalModelProvider(p.kind, p.local_model, self.local, make)
        return make(p.base_url)


class Providers:
    """One provider per profile, built at first use by the factory (metered when an observer is
    set), closed together by :meth:`aclose`."""

    def __init__(self, factory: ProviderFactory) -> None:
        self._factory = factory
        self._providers: dict[str, engine.Provider] = {}
        self.observer: RuntimeObserver | None = None
        self.store: object | None = None  # with write_wait(): streams wait on its backlog

    def get(self, profile: Profile) -> engine.Provider:
        provider = self._providers.get(profile.name)
        if provider is None:
            provider = self._factory(profile)
            if self.observer is not None:
                provider = MeteredProvider(provider, self.observer)
            provider = backpressured(provider, self.store)  # bounded write queue
            self._providers[profile.name] = provider
        return provider

    async def aclose(self) -> None:
        """Close every provider built; each is closed even if another fails. Raises the failure
        (an ``ExceptionGroup`` if several failed)."""
        providers, self._providers = list(self._providers.values()), {}
        failures: list[Exception] = []
        for provider in providers:
            try:
                await provider.aclose()
            except Exception as exc:  # the others are still closed
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        if failures:
            raise ExceptionGroup("closing providers failed", failures)
