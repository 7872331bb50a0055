"""The Runtime's config bundles: put, get, list and delete; resolution at CreateWorker; and the
workers' profile snapshots. The Runtime calls this from small hooks (load, create, run, delete)
and exposes it as :attr:`Runtime.config_bundles`, so ``_runtime.py`` stays about workers and runs.

Decisions:

- **Content-addressed, immutable.** A bundle is (id, digest) with ``digest = "sha256:" + hex``
  over exactly the bytes received (as OCI descriptors are): no canonical form to drift. Putting
  the same bytes again answers ``created = False`` and changes nothing (annotations included);
  other bytes under the same id are another version. There is no "latest": a reference names
  its digest.
- **Metadata in memory, bytes in the store.** The index (bounded by ``max_bundles``) answers
  get/list/delete and the in-use check synchronously; bytes are read from the store only to
  resolve a create or when asked for. Changes are decided synchronously (no ``await`` between
  the check and the index change) and acknowledged once committed, like every other change.
- **A worker never needs its bundle again.** CreateWorker resolves the profile (prompt
  references substituted, host provider checked) and stores the profile's table as a snapshot
  with the worker, in the same commit; runs, restarts and recovery use the snapshot. The
  provider itself stays the host's (by name): secrets and host facts are never in a bundle, so
  they are never in a snapshot either.
- **In use = referenced by a worker not yet deleted** (stopped ones included: they keep their
  data, and with it the reference). A create and a delete cannot cross: the create re-checks the
  bundle synchronously right before it commits (see :meth:`confirm`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from runtime_server import errors
from runtime_server.model import ConfigBundle, ConfigBundleRef, Page, Worker, now
from runtime_server.runtime._bundle_format import (
    MEDIA_TYPE,
    check_bundle_id,
    digest_of,
    parse_bundle,
    profile_from_table,
    snapshot_json,
)
from runtime_server.runtime._paging import decode_token, encode_token, fitting
from runtime_server.runtime._profiles import ConfigError, Profile
from runtime_server.runtime._settle import read_failure
from runtime_server.runtime._storewatch import StoreState
from runtime_server.runtime._validation import check_len, check_unicode
from runtime_server.store import (
    DeleteConfigBundle,
    Mutation,
    PutConfigBundle,
    PutWorkerProfile,
    StoredState,
    text_bytes,
)

if TYPE_CHECKING:
    from runtime_server.runtime._core import RuntimeCore

log = logging.getLogger(__name__)

# ConfigBundle.referencing_workers lists at most this many (referencing_worker_count has all).
MAX_LISTED_REFERENCES = 100

_Key = tuple[str, str]


@dataclass(frozen=True, slots=True)
class Resolved:
    """A CreateWorker's profile, resolved from a bundle (not yet committed)."""

    ref: ConfigBundleRef
    profile: Profile
    snapshot: str

    @property
    def memory_bytes(self) -> int:
        """What the worker will hold for it while it lives (see :func:`snapshot_bytes`)."""
        return snapshot_bytes(self.snapshot)


@dataclass(frozen=True, slots=True)
class BundleContent:
    bundle: ConfigBundle
    content: bytes


class ConfigBundles:
    def __init__(self, runtime: RuntimeCore) -> None:
        self._rt = runtime
        self._index: dict[_Key, ConfigBundle] = {}
        self._refs: dict[_Key, set[str]] = {}  # bundle -> ids of workers referencing it
        self._snapshots: dict[str, str] = {}  # worker id -> its profile snapshot (JSON)
        self._profiles: dict[str, Profile] = {}  # worker id -> snapshot resolved (a cache)
        # Estimated bytes of the snapshots held, counted in the memory budget (_core's records).
        self.snapshot_bytes = 0
        # Reads answer only what is committed (runtime._settle). A put or delete changes the
        # index before its commit and writes no event (no seq to wait for): the number of the
        # newest one not known committed, which a read waits for with the store's flush.
        self._changes = 0
        self._unflushed = 0

    # --- hooks of the Runtime ---

    def load(self, stored: StoredState) -> None:
        """The committed bundles, references and snapshots (at start, and after a store failure)."""
        self._index = {(b.id, b.digest): b for b in stored.config_bundles}
        self._unflushed = 0  # what is loaded is committed
        self._snapshots = dict(stored.worker_profiles)
        self._profiles = {}
        self.snapshot_bytes = sum(map(snapshot_bytes, self._snapshots.values()))
        self._refs = {}
        for w in stored.workers:
            if w.config_bundle is not None:
                key = (w.config_bundle.id, w.config_bundle.digest)
                self._refs.setdefault(key, set()).add(w.worker_id)

    async def resolve(self, ref: ConfigBundleRef | None, profile: str) -> Resolved | None:
        """CreateWorker's profile from bundle ``ref`` (None without one). Awaits the store read:
        call it before the create's synchronous part, then :meth:`confirm` within it."""
        if ref is None:
            return None
        if not ref.digest:
            raise errors.InvalidArgument(
                "config_bundle.digest", "is required (a bundle is named by its digest: no latest)"
            )
        label = f"{ref.id}@{ref.digest}"
        if (ref.id, ref.digest) not in self._index:
            raise errors.ConfigBundleNotFound(ref.id, ref.digest)
        content = await self._rt._store.read_config_bundle(ref.id, ref.digest)
        if content is None:  # deleted while we read
            raise errors.ConfigBundleNotFound(ref.id, ref.digest)
        # Checked again against this host's policy now (it may have changed since the put).
        parsed = parse_bundle(content, policy=self._rt._workspaces.policy, limits=self._rt.limits)
        table = parsed.profiles.get(profile)
        if table is None:
            raise errors.ProfileNotFound(profile, bundle=label)
        provider = self._rt.config.providers.get(str(table["provider"]))
        if provider is None:
            raise errors.ProviderNotAvailable(str(table["provider"]), profile)
        resolved = _named(profile_from_table(profile, table, provider), ref)
        return Resolved(ref, resolved, snapshot_json(ref.id, ref.digest, profile, table))

    def confirm(self, resolved: Resolved | None) -> Profile | None:
        """Synchronously before the create commits: the bundle is still stored (a concurrent
        delete may have won while ``resolve`` read it). The profile to create with, or None."""
        if resolved is None:
            return None
        if (resolved.ref.id, resolved.ref.digest) not in self._index:
            raise errors.ConfigBundleNotFound(resolved.ref.id, resolved.ref.digest)
        return resolved.profile

    def attach(self, resolved: Resolved | None, worker_id: str) -> list[Mutation]:
        """The worker is being created from ``resolved``: its snapshot, to commit with it."""
        if resolved is None:
            return []
        key = (resolved.ref.id, resolved.ref.digest)
        self._refs.setdefault(key, set()).add(worker_id)
        self._snapshots[worker_id] = resolved.snapshot
        self.snapshot_bytes += resolved.memory_bytes
        self._profiles[worker_id] = resolved.profile
        return [PutWorkerProfile(worker_id, resolved.snapshot)]

    def forget(self, worker: Worker) -> None:
        """The worker was deleted (its snapshot row goes with DeleteWorkerData)."""
        snapshot = self._snapshots.pop(worker.worker_id, None)
        if snapshot is not None:
            self.snapshot_bytes -= snapshot_bytes(snapshot)
        self._profiles.pop(worker.worker_id, None)
        if worker.config_bundle is not None:
            key = (worker.config_bundle.id, worker.config_bundle.digest)
            refs = self._refs.get(key)
            if refs is not None:
                refs.discard(worker.worker_id)
                if not refs:
                    del self._refs[key]

    def profile_of(self, worker: Worker) -> Profile | None:
        """The profile a worker runs with: its snapshot (bundle workers), else the host's profile
        of its name. None if it cannot be had (a provider the host no longer defines)."""
        if worker.config_bundle is None:
            return self._rt.config.profiles.get(worker.profile)
        cached = self._profiles.get(worker.worker_id)
        if cached is not None:
            return cached
        raw = self._snapshots.get(worker.worker_id)
        if raw is None:
            return None
        try:
            snap = json.loads(raw)
            provider = self._rt.config.providers.get(str(snap["table"].get("provider", "")))
            if provider is None:
                return None
            ref = ConfigBundleRef(snap["bundle_id"], snap["digest"])
            profile = _named(profile_from_table(snap["profile"], snap["table"], provider), ref)
        except (ValueError, KeyError, TypeError, AttributeError, ConfigError):
            # a snapshot this build cannot read: the run fails (CONFIGURATION_ERROR), no crash
            log.warning("worker %s: unreadable profile snapshot", worker.worker_id)
            return None
        self._profiles[worker.worker_id] = profile
        return profile

    # --- ConfigService ---

    async def put_bundle(
        self,
        id: str,
        content: bytes,
        *,
        media_type: str = "",
        expected_digest: str = "",
        annotations: Mapping[str, str] | None = None,
    ) -> tuple[ConfigBundle, bool]:
        """Store a bundle; ``(bundle, created)`` (created False: these bytes were already here)."""
        check_unicode(
            id=id, media_type=media_type, expected_digest=expected_digest, annotations=annotations
        )
        bundle_id = id
        rt = self._rt
        log_ = rt._check_serving()
        lim = rt.limits
        annotations = dict(annotations or {})
        check_bundle_id("id", bundle_id, lim)
        media_type = media_type or MEDIA_TYPE
        if media_type != MEDIA_TYPE:
            raise errors.InvalidArgument(
                "media_type", f"{media_type[:80]!r} is not supported (supported: {MEDIA_TYPE})"
            )
        check_len("expected_digest", expected_digest, lim.max_ref_chars)
        _check_annotations(annotations, lim.max_labels, lim.max_label_chars)
        if len(content) > lim.max_bundle_bytes:
            raise errors.ConfigBundleInvalid(
                "content",
                f"{len(content)} bytes is over this runtime's limit of {lim.max_bundle_bytes} "
                "(max_bundle_bytes)",
            )
        digest = digest_of(content)
        if expected_digest and expected_digest != digest:
            raise errors.DigestMismatch(expected_digest, digest)
        key = (bundle_id, digest)
        existing = self._index.get(key)
        if existing is not None:
            await rt._store.flush()  # acknowledged only once the first put is committed
            return self._with_refs(existing), False
        parsed = parse_bundle(content, policy=rt._workspaces.policy, limits=lim)
        if len(self._index) >= lim.max_bundles:
            raise errors.TooManyConfigBundles(lim.max_bundles)
        rt._store_watch.check()
        rt._budget.admit(len(content))  # the memory store keeps the bytes
        bundle = ConfigBundle(
            id=bundle_id,
            digest=digest,
            media_type=media_type,
            size_bytes=len(content),
            created_at=now(),
            profiles=tuple(sorted(parsed.profiles)),
            annotations=annotations,
        )
        self._index[key] = bundle
        log_.append("", "", [], [PutConfigBundle(bundle, content)])
        self._changes = self._unflushed = self._changes + 1
        await rt._store.flush()
        return self._with_refs(bundle), True

    async def get_bundle(
        self,
        id: str,
        digest: str,
        *,
        include_content: bool = False,
    ) -> BundleContent:
        """A bundle's metadata, and its bytes if asked for."""
        check_unicode(id=id, digest=digest)
        bundle_id = id
        key = self._key(bundle_id, digest)
        bundle = self._index.get(key)
        if bundle is None:
            await self._committed()  # (NOT_FOUND too: a delete is reported once committed)
            raise errors.ConfigBundleNotFound(bundle_id, digest)
        found = self._with_refs(bundle)
        await self._committed()
        content = b""
        if include_content:
            read = await self._rt._store.read_config_bundle(bundle_id, digest)
            if read is None:
                raise errors.ConfigBundleNotFound(bundle_id, digest)
            content = read
        return BundleContent(found, content)

    async def list_bundles(
        self,
        *,
        page_size: int = 0,
        page_token: str = "",
        id: str = "",
    ) -> Page[ConfigBundle]:
        """One page of bundles by id, then digest (optionally one id's versions)."""
        check_unicode(page_token=page_token, id=id)
        bundle_id = id
        rt = self._rt
        size = rt._page_size(page_size)
        check_len("page_token", page_token, rt.limits.max_ref_chars)
        if bundle_id:
            check_bundle_id("id", bundle_id, rt.limits)
        after: tuple[str, ...] = ()
        if page_token:
            after = tuple(str(decode_token(page_token, "b")).split(" ", 1))
        keys = sorted(k for k in self._index if not bundle_id or k[0] == bundle_id)
        rest = [k for k in keys if k > after] if after else keys
        chunk = [self._with_refs(self._index[k]) for k in rest[:size]]
        chunk = chunk[: fitting(chunk, _weight, rt._page_bytes)]
        more = len(rest) > len(chunk)
        token = encode_token("b", f"{chunk[-1].id} {chunk[-1].digest}") if more and chunk else ""
        await self._committed()
        return Page(tuple(chunk), token, len(keys))

    async def delete_bundle(self, id: str, digest: str) -> None:
        """Remove a bundle; refused while a worker references it."""
        check_unicode(id=id, digest=digest)
        bundle_id = id
        rt = self._rt
        log_ = rt._check_serving()
        key = self._key(bundle_id, digest)
        if key not in self._index:
            raise errors.ConfigBundleNotFound(bundle_id, digest)
        refs = self._refs.get(key)
        if refs:
            first = ",".join(sorted(refs)[:3])
            raise errors.ConfigBundleInUse(bundle_id, digest, first, len(refs))
        rt._store_watch.check()
        del self._index[key]
        log_.append("", "", [], [DeleteConfigBundle(bundle_id, digest)])
        self._changes = self._unflushed = self._changes + 1
        await rt._store.flush()

    # --- helpers ---

    async def _committed(self) -> None:
        """Before a read answers (see ``_unflushed``): the bundles' own changes by the store's
        flush, the references (workers created and deleted) by their seq."""
        rt = self._rt
        changes = self._unflushed
        if changes:
            # A failure discards the change this read would show (memory is rolled back by
            # load(), which clears _unflushed): STORE_FAILURE, never the discarded index (_settle).
            if rt._store_watch.state is not StoreState.OK:
                raise read_failure(rt._log.failure if rt._log is not None else None)
            try:
                await rt._store.flush()  # every batch written so far
            except errors.StoreFailure as exc:
                raise read_failure(exc) from exc
            if self._unflushed == changes:
                self._unflushed = 0
        await rt._settled(rt._unsettled())

    def _key(self, bundle_id: str, digest: str) -> _Key:
        check_bundle_id("id", bundle_id, self._rt.limits)
        if not digest:
            raise errors.InvalidArgument(
                "digest", "is required (a bundle is named by its digest: no latest)"
            )
        check_len("digest", digest, self._rt.limits.max_ref_chars)
        return bundle_id, digest

    def _with_refs(self, bundle: ConfigBundle) -> ConfigBundle:
        refs = sorted(self._refs.get((bundle.id, bundle.digest), ()))
        return replace(
            bundle,
            referencing_workers=tuple(refs[:MAX_LISTED_REFERENCES]),
            referencing_worker_count=len(refs),
        )


def snapshot_bytes(snapshot: str) -> int:
    """A profile snapshot's estimated memory: its JSON text, and as much again for the profile
    resolved from it (the Runtime keeps both while the worker lives: see :meth:`profile_of`)."""
    return 2 * text_bytes(snapshot)


def _named(profile: Profile, ref: ConfigBundleRef) -> Profile:
    """Profiles are keyed by name where the Runtime caches their providers: a bundle's profile
    gets a name no host profile (and no other bundle's) can have."""
    return replace(profile, name=f"{profile.name}@{ref.id}@{ref.digest}")


def _check_annotations(annotations: Mapping[str, str], max_count: int, max_chars: int) -> None:
    """Bounded like worker labels (max_labels, max_label_chars)."""
    if len(annotations) > max_count:
        raise errors.InvalidArgument("annotations", f"more than {max_count} annotations")
    for k, v in annotations.items():
        if not k or len(k) > max_chars or not k.isprintable():
            raise errors.InvalidArgument("annotations", f"bad annotation key {k[:40]!r}")
        if len(v) > max_chars or not v.isprintable():
            raise errors.InvalidArgument(f"annotations[{k}]", "bad annotation value")


def _weight(b: ConfigBundle) -> int:
    """An upper bound of a bundle's encoded size in bytes (4 per character, plus framing)."""
    chars = len(b.id) + len(b.digest) + len(b.media_type) + sum(len(p) + 2 for p in b.profiles)
    chars += sum(len(k) + len(v) + 6 for k, v in b.annotations.items())
    chars += sum(len(w) + 2 for w in b.referencing_workers)
    return 4 * chars + 64
