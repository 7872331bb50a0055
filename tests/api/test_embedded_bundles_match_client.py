"""The embedded handle's config bundle methods answer as the client does for the same Runtime: one
Runtime served over a real gRPC server and wrapped in-process at the same time."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

import runtime_client as rc
from runtime_server.embedded import EmbeddedRuntime

if TYPE_CHECKING:
    from serving import Served

BUNDLE = (
    b'[prompts]\nhi = "Hi."\n\n[profiles.p]\nprovider = "builtin"\nmodel = "echo"\nprompt = "hi"\n'
)
Call = Callable[[Any], Awaitable[Any]]


async def _same_error(served: Served, embedded: EmbeddedRuntime, call: Call) -> None:
    with pytest.raises(rc.RuntimeServiceError) as remote:
        await call(served.client)
    with pytest.raises(rc.RuntimeServiceError) as local:
        await call(embedded)
    r, e = remote.value, local.value
    assert type(e) is type(r)
    assert (e.reason, e.code, e.message, dict(e.metadata)) == (
        r.reason,
        r.code,
        r.message,
        dict(r.metadata),
    )


async def test_bundle_calls_answer_alike(served: Served) -> None:
    embedded = EmbeddedRuntime(served.runtime)
    client = served.client
    put = await embedded.put_bundle("team", BUNDLE, annotations={"a": "b"})
    assert put.created
    assert await client.put_bundle("team", BUNDLE) == rc.ConfigBundlePut(put.bundle, False)
    ref = put.bundle.ref
    w = (await embedded.create_worker(profile="p", config_bundle=ref)).worker
    assert w == await client.get_worker(w.worker_id)

    calls: tuple[Call, ...] = (
        lambda h: h.get_bundle("team", ref.digest),
        lambda h: h.get_bundle("team", ref.digest, include_content=True),
        lambda h: h.list_bundles(),
        lambda h: h.list_bundles(id="team", page_size=1),
    )
    for call in calls:
        assert await call(embedded) == await call(client)
    assert (await embedded.get_bundle("team", ref.digest)).bundle.referencing_workers == (
        w.worker_id,
    )

    refusals: list[Call] = [
        lambda h: h.put_bundle("bad", b'[profiles.p]\nprovider = "x"\nmodel = "m"\ntoken = "t"\n'),
        lambda h: h.put_bundle("bad", BUNDLE, expected_digest="sha256:00"),
        lambda h: h.put_bundle("bad id", BUNDLE),
        lambda h: h.get_bundle("team", "sha256:" + "1" * 64),
        lambda h: h.delete_bundle("team", ref.digest),
        lambda h: h.create_worker(profile="q", config_bundle=ref),
        lambda h: h.list_bundles(page_token="not-a-token"),
    ]
    for call in refusals:
        await _same_error(served, embedded, call)

    await embedded.delete_worker(w.worker_id)
    await embedded.delete_bundle("team", ref.digest)
    assert (await client.list_bundles()).total_size == 0
