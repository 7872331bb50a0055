"""Bundle sync: the Backend's config bundles (``bundles_dir``, see ``backend.bundle_files``) onto
every runtime it drives, embedded or remote (issue 13 item 5).

- **Eager**: whenever a runtime becomes READY — first contact, and again after it was
  unreachable, draining or restarted — the Backend lists the bundles the runtime holds
  (ListBundles, paged) and puts each of its own bundles the runtime lacks. A runtime that kept
  its store through a restart gets no put at all; one that lost it gets them all again. Puts
  carry ``expected_digest``, so bytes can never land under another digest.
- **Lazy**: a create whose runtime answers CONFIG_BUNDLE_NOT_FOUND for a bundle the Backend holds
  at that digest puts it and retries the create exactly once (same request_id). A bundle the
  Backend does not hold at that digest: the runtime's typed error goes to the caller.
- **Re-read**: the directory is read again on every sync, every ``GET /api/bundles`` and every
  create with a bundle (cheap: unchanged files are not read again). An edited file is a new
  digest: it is pushed at once to every READY runtime; the old digest stays valid on the
  runtimes that hold it (workers created from it keep their snapshot). No restart, no reload
  call.
- **Availability** per runtime and bundle: ``present`` (the runtime holds this digest),
  ``pushing``, ``failed`` (with the runtime's reason, e.g. CONFIG_BUNDLE_INVALID naming the key,
  or UNAVAILABLE) or ``missing`` (not known to be there: the runtime was not READY since the
  file changed). A failure is recorded, logged, and retried on the runtime's next READY or on a
  create that needs the bundle; it never reaches the Backend's own health.

Syncs of one runtime never overlap: requests that arrive while one runs coalesce into one more.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.bundle_files import BundleFiles, LocalBundle
from backend.config import BackendConfigError
from backend.errors import scrub
from runtime_client import (
    ConfigBundleRef,
    Created,
    RuntimeHandle,
    RuntimeHealth,
    RuntimeRegistry,
    RuntimeStateChanged,
)
from runtime_client.errors import ConfigBundleNotFound, RuntimeServiceError

__all__ = ["Availability", "BundleSync"]

log = logging.getLogger(__name__)

LIST_PAGE_SIZE = 500


@dataclass(frozen=True, slots=True)
class Availability:
    """One bundle digest on one runtime."""

    state: str  # present | pushing | failed
    digest: str
    reason: str = ""
    since: float = 0.0


class BundleSync:
    """See the module docstring. ``directory`` None: no bundles (every call is cheap)."""

    def __init__(self, directory: Path | None) -> None:
        self._files = BundleFiles(directory) if directory is not None else None
        self._bundles: dict[str, LocalBundle] = {}
        self._avail: dict[tuple[str, str], Availability] = {}  # (runtime_id, bundle id)
        self.puts: dict[str, int] = {}  # runtime_id -> puts sent (the Backend's own count)
        self._registry: RuntimeRegistry | None = None
        self._wanted: set[str] = set()
        self._inflight: dict[tuple[str, str, str], asyncio.Future[RuntimeServiceError | None]] = {}
        self._busy: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._stop_listening: Callable[[], None] = _nothing

    @property
    def enabled(self) -> bool:
        return self._files is not None

    async def start(self, registry: RuntimeRegistry) -> None:
        """Read the directory (BackendConfigError if it cannot be listed) and follow the
        registry's runtimes. Call before ``registry.start()``: the first READY is seen too."""
        self._registry = registry
        if self._files is None:
            return
        try:
            self._bundles = await asyncio.to_thread(self._files.scan)
        except OSError as exc:
            directory = self._files.directory
            raise BackendConfigError(f"bundles_dir: {directory}: {exc.strerror or exc}") from exc
        for b in self._bundles.values():
            if not b.ok:
                log.warning("bundle file %s: %s", b.file, b.error)
        self._stop_listening = registry.listen(self._on_change)

    async def close(self) -> None:
        self._stop_listening()
        pending: list[asyncio.Future[Any]] = [*self._tasks, *self._inflight.values()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)

    # --- the directory ------------------------------------------------------------------------

    async def refresh(self) -> dict[str, LocalBundle]:
        """Read the directory again; a new or changed bundle is pushed to every READY runtime."""
        if self._files is None:
            return {}
        try:
            found = await asyncio.to_thread(self._files.scan)
        except OSError as exc:  # the directory went away: keep serving what was read before
            log.warning("bundles_dir: %s", exc.strerror or exc)
            return self._bundles
        changed = any(
            b.ok and (self._bundles.get(i) is None or self._bundles[i].digest != b.digest)
            for i, b in found.items()
        )
        self._bundles = found
        if changed and self._registry is not None:
            for status in self._registry.runtimes():
                if status.state is RuntimeHealth.READY and status.runtime_id:
                    self.request(status.runtime_id)
        return found

    def bundles(self) -> Mapping[str, LocalBundle]:
        return self._bundles

    def availability(self, runtime_id: str, bundle: LocalBundle) -> Availability | None:
        """What is known of ``bundle`` (its current digest) on ``runtime_id``; None: nothing."""
        found = self._avail.get((runtime_id, bundle.id))
        return found if found is not None and found.digest == bundle.digest else None

    # --- eager push ---------------------------------------------------------------------------

    def _on_change(self, change: RuntimeStateChanged) -> None:
        if change.state is RuntimeHealth.READY and change.runtime_id:
            self.request(change.runtime_id)

    def request(self, runtime_id: str) -> None:
        """Sync ``runtime_id`` soon (in the background; coalesced with one already running)."""
        self._wanted.add(runtime_id)
        if runtime_id in self._busy:
            return
        self._busy.add(runtime_id)
        task = asyncio.ensure_future(self._run(runtime_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, runtime_id: str) -> None:
        try:
            while runtime_id in self._wanted:
                self._wanted.discard(runtime_id)
                try:
                    await self.sync(runtime_id)
                except asyncio.CancelledError:
                    raise
                except Exception:  # a bug must not end the Backend: logged, retried next READY
                    log.exception("bundle sync of runtime %s failed", runtime_id)
        finally:
            self._busy.discard(runtime_id)

    async def sync(self, runtime_id: str) -> None:
        """Put every bundle of the directory that ``runtime_id`` lacks."""
        if self._registry is None or self._files is None:
            return
        bundles = [b for b in (await self.refresh()).values() if b.ok]
        if not bundles:
            return
        try:
            handle = self._registry.handle(runtime_id)
            listed_at = time.time()
            held = await _held(handle)
        except RuntimeServiceError as exc:
            # not routable or not answering: each bundle it may lack is marked; next READY retries
            for b in bundles:
                known = self.availability(runtime_id, b)
                if known is None or known.state != "present":
                    self._set(runtime_id, b, "failed", _reason(exc))
            return
        for b in bundles:
            known = self.availability(runtime_id, b)
            if (b.id, b.digest) in held:
                self._set(runtime_id, b, "present")
            elif known is None or known.state != "present" or known.since < listed_at:
                # (present since the listing: a create's lazy push put it meanwhile)
                await self.put(runtime_id, handle, b)

    async def put(
        self, runtime_id: str, handle: RuntimeHandle, bundle: LocalBundle
    ) -> RuntimeServiceError | None:
        """Put ``bundle`` on the runtime; the error (also recorded) or None. A put of the same
        bytes to the same runtime already under way is waited for, not sent twice (an eager
        push and a create's lazy one can meet)."""
        key = (runtime_id, bundle.id, bundle.digest)
        running = self._inflight.get(key)
        if running is not None:
            return await asyncio.shield(running)
        future = asyncio.ensure_future(self._put(runtime_id, handle, bundle))
        self._inflight[key] = future
        try:
            return await asyncio.shield(future)
        finally:
            if future.done():
                self._inflight.pop(key, None)
            else:
                future.add_done_callback(lambda _: self._inflight.pop(key, None))

    async def _put(
        self, runtime_id: str, handle: RuntimeHandle, bundle: LocalBundle
    ) -> RuntimeServiceError | None:
        self._set(runtime_id, bundle, "pushing")
        self.puts[runtime_id] = self.puts.get(runtime_id, 0) + 1
        try:
            await handle.put_bundle(bundle.id, bundle.content, expected_digest=bundle.digest)
        except RuntimeServiceError as exc:
            self._set(runtime_id, bundle, "failed", _reason(exc))
            log.warning("bundle %s: put on runtime %s failed: %s", bundle.id, runtime_id, exc)
            return exc
        self._set(runtime_id, bundle, "present")
        return None

    def _set(self, runtime_id: str, bundle: LocalBundle, state: str, reason: str = "") -> None:
        self._avail[(runtime_id, bundle.id)] = Availability(
            state, bundle.digest, reason, time.time()
        )

    # --- lazy push ----------------------------------------------------------------------------

    async def create_worker(
        self,
        runtime_id: str,
        ref: ConfigBundleRef,
        *,
        request_id: str = "",
        **kwargs: Any,
    ) -> tuple[str, Created]:
        """Create with bundle ``ref`` on ``runtime_id``; on CONFIG_BUNDLE_NOT_FOUND for a bundle
        the directory holds at that digest, put it there and retry once (same request_id)."""
        registry = self._require_registry()
        key = request_id or str(uuid.uuid4())
        try:
            return await registry.create_worker(
                runtime_id=runtime_id, config_bundle=ref, request_id=key, **kwargs
            )
        except ConfigBundleNotFound:
            local = (await self.refresh()).get(ref.id)
            if local is None or not local.ok or local.digest != ref.digest:
                raise  # not a bundle of ours (or not these bytes): the runtime's error stands
            error = await self.put(runtime_id, registry.handle(runtime_id), local)
            if error is not None:
                raise error from None
        return await registry.create_worker(
            runtime_id=runtime_id, config_bundle=ref, request_id=key, **kwargs
        )

    def _require_registry(self) -> RuntimeRegistry:
        if self._registry is None:
            raise RuntimeError("bundle sync is not started")
        return self._registry


def _nothing() -> None:
    return None


async def _held(handle: RuntimeHandle) -> set[tuple[str, str]]:
    """Every (id, digest) the runtime holds (all pages)."""
    held: set[tuple[str, str]] = set()
    token = ""
    while True:
        page = await handle.list_bundles(page_size=LIST_PAGE_SIZE, page_token=token)
        held.update((b.id, b.digest) for b in page.items)
        token = page.next_page_token
        if not token:
            return held


def _reason(exc: RuntimeServiceError) -> str:
    """The runtime's reason and words, scrubbed of addresses (a browser reads this)."""
    return scrub(f"{exc.reason}: {exc.message}")[:300]
