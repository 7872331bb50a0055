"""The config bundle error classes (issue 13) of :mod:`runtime_client.errors` (which draws the
tree and maps reasons to them), kept apart so ``_error_tree`` stays readable. Import them from
``runtime_client.errors``."""

from __future__ import annotations

from typing import Unpack

from runtime_client._error_tree import FailedPrecondition, InvalidArgument, ResourceExhausted, Wire

__all__ = [
    "ConfigBundleInUse",
    "ConfigBundleInvalid",
    "ConfigBundleNotFound",
    "DigestMismatch",
    "ProviderNotAvailable",
    "TooManyConfigBundles",
]


class ConfigBundleInvalid(InvalidArgument):
    """Bundle content refused: ``field``, its key path (or ``content``); ``line``, 0 if none."""

    reason = "CONFIG_BUNDLE_INVALID"
    line: int

    def __init__(
        self, message: str = "", *, field: str = "", line: int = 0, **wire: Unpack[Wire]
    ) -> None:
        self._typed(message or f"{field}: refused (line {line})", wire, field=field, line=line)


class DigestMismatch(InvalidArgument):
    """``expected_digest`` differs from the digest of the bytes sent (``computed_digest``)."""

    reason = "DIGEST_MISMATCH"
    expected_digest: str
    computed_digest: str

    def __init__(
        self, message: str = "", *, field: str = "expected_digest", expected_digest: str = "",
        computed_digest: str = "", **wire: Unpack[Wire],
    ) -> None:  # fmt: skip
        text = message or f"{expected_digest!r} is not the content's digest {computed_digest!r}"
        self._typed(text, wire, field=field, expected_digest=expected_digest,
                    computed_digest=computed_digest)  # fmt: skip


class ConfigBundleNotFound(FailedPrecondition):
    """No config bundle with this id and digest is stored on the runtime (push it, then retry)."""

    reason = "CONFIG_BUNDLE_NOT_FOUND"
    bundle_id: str
    digest: str

    def __init__(
        self, message: str = "", *, bundle_id: str = "", digest: str = "", **wire: Unpack[Wire]
    ) -> None:
        text = message or f"config bundle {bundle_id!r} with digest {digest!r} is not stored"
        self._typed(text, wire, bundle_id=bundle_id, digest=digest)


class ConfigBundleInUse(FailedPrecondition):
    """Workers still reference the config bundle: ``worker_count`` of them, the first few in
    ``worker_ids`` (comma-separated) and in the message."""

    reason = "CONFIG_BUNDLE_IN_USE"
    bundle_id: str
    digest: str
    worker_ids: str
    worker_count: int

    def __init__(
        self, message: str = "", *, bundle_id: str = "", digest: str = "", worker_ids: str = "",
        worker_count: int = 0, **wire: Unpack[Wire],
    ) -> None:  # fmt: skip
        text = message or f"config bundle {bundle_id!r} is referenced by {worker_count} worker(s)"
        self._typed(
            text, wire, bundle_id=bundle_id, digest=digest, worker_ids=worker_ids,
            worker_count=worker_count,
        )  # fmt: skip


class ProviderNotAvailable(FailedPrecondition):
    """The config bundle's profile ``profile`` names a provider this runtime does not define."""

    reason = "PROVIDER_NOT_AVAILABLE"
    provider: str
    profile: str

    def __init__(
        self, message: str = "", *, provider: str = "", profile: str = "", **wire: Unpack[Wire]
    ) -> None:
        text = message or f"profile {profile!r} needs provider {provider!r}, not defined here"
        self._typed(text, wire, provider=provider, profile=profile)


class TooManyConfigBundles(ResourceExhausted):
    """The runtime stores its maximum of ``limit`` config bundles (``max_bundles``): delete
    unused ones (a bundle already stored can always be put again)."""

    reason = "TOO_MANY_CONFIG_BUNDLES"
    limit: int

    def __init__(self, message: str = "", *, limit: int = 0, **wire: Unpack[Wire]) -> None:
        text = message or f"the runtime holds its maximum of {limit} config bundles"
        self._typed(text, wire, limit=limit)
