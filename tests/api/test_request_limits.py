"""Issue 7 item 2, field by field: every string and list of every request has an explicit limit,
reported by GetRuntime and configurable; one past it is INVALID_ARGUMENT naming the field, and
changes nothing. Stored values a caller does not send directly stay bounded too: a worker must
fit one message, diagnostics' text is cut, and ListDiagnostics pages are cut by encoded size."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import pytest

from runtime_client import (
    ConfigBundleNotFound,
    ConfigBundleRef,
    Diagnostic,
    InvalidArgument,
    Mount,
    RuntimeClient,
    Workspace,
    WorkspaceNotAllowed,
)
from runtime_server.model import DiagnosticLevel, Limits

if TYPE_CHECKING:
    from serving import ServeFactory

LIMITS = replace(
    Limits(),
    max_id_chars=40,
    max_ref_chars=80,
    max_path_chars=50,
    max_mounts=2,
    max_reason_chars=30,
)
WID = "0190a0a0-0000-7000-8000-000000000000"

Call = Callable[[RuntimeClient], Awaitable[Any]]
# (id, call at the limit, call one past it, field)
CASES: list[tuple[str, Call, Call, str]] = [
    (
        "config_bundle.id",
        lambda c: c.create_worker(config_bundle=ConfigBundleRef("b" * 40, "d")),
        lambda c: c.create_worker(config_bundle=ConfigBundleRef("b" * 41, "d")),
        "config_bundle.id",
    ),
    (
        "config_bundle.digest",
        lambda c: c.create_worker(config_bundle=ConfigBundleRef("b", "d" * 80)),
        lambda c: c.create_worker(config_bundle=ConfigBundleRef("b", "d" * 81)),
        "config_bundle.digest",
    ),
    (
        "workspace.root",
        lambda c: c.create_worker(workspace=Workspace("/" + "r" * 49)),
        lambda c: c.create_worker(workspace=Workspace("/" + "r" * 50)),
        "workspace.root",
    ),
    (
        "mount count",
        lambda c: c.create_worker(workspace=Workspace("/r", (Mount("/a"), Mount("/b")))),
        lambda c: c.create_worker(
            workspace=Workspace("/r", (Mount("/a"), Mount("/b"), Mount("/c")))
        ),
        "workspace.mounts",
    ),
    (
        "mount path",
        lambda c: c.create_worker(workspace=Workspace("/r", (Mount("/a"), Mount("/" + "m" * 49)))),
        lambda c: c.create_worker(workspace=Workspace("/r", (Mount("/a"), Mount("/" + "m" * 50)))),
        "workspace.mounts[1].path",
    ),
    (
        "profile name",
        lambda c: c.create_worker(profile="echo"),
        lambda c: c.create_worker(profile="p" * 41),
        "profile",
    ),
    (
        "stop reason",
        lambda c: c.stop_worker(WID, reason="s" * 30),
        lambda c: c.stop_worker(WID, reason="s" * 31),
        "reason",
    ),
    (
        "list_workers page_token",
        lambda c: c.list_workers(page_token=""),
        lambda c: c.list_workers(page_token="t" * 81),
        "page_token",
    ),
    (
        "list_diagnostics page_token",
        lambda c: c.list_diagnostics(page_token=""),
        lambda c: c.list_diagnostics(page_token="t" * 81),
        "page_token",
    ),
    (
        "get_transcript page_token",
        lambda c: c.get_transcript(WID, page_token=""),
        lambda c: c.get_transcript(WID, page_token="t" * 81),
        "page_token",
    ),
    (
        "list_workers label filter",
        lambda c: c.list_workers(labels={"k": "v"}),
        lambda c: c.list_workers(labels={f"k{i}": "v" for i in range(65)}),
        "labels",
    ),
]


@pytest.mark.parametrize(
    ("at_limit", "past_limit", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_one_past_each_limit_is_invalid_argument_naming_the_field(
    serve: ServeFactory, at_limit: Call, past_limit: Call, field: str
) -> None:
    served = await serve(limits=LIMITS)
    client = served.client
    await client.create_worker(worker_id=WID)
    # the limit itself passes the limits (a workspace is then refused by the host policy, which
    # allows no roots here, and a bundle reference names no stored bundle: not limit errors)
    with contextlib.suppress(WorkspaceNotAllowed, ConfigBundleNotFound):
        await at_limit(client)
    workers = (await client.list_workers()).total_size
    with pytest.raises(InvalidArgument) as info:
        await past_limit(client)
    assert info.value.field == field
    assert (await client.list_workers()).total_size == workers


async def test_get_runtime_reports_the_request_limits(serve: ServeFactory) -> None:
    served = await serve(limits=LIMITS)
    lim = (await served.client.get_runtime()).limits
    assert (lim.max_id_chars, lim.max_ref_chars, lim.max_path_chars) == (40, 80, 50)
    assert (lim.max_mounts, lim.max_reason_chars) == (2, 30)
    defaults = (await (await serve()).client.get_runtime()).limits
    assert (defaults.max_id_chars, defaults.max_ref_chars, defaults.max_path_chars) == (
        128,
        256,
        4096,
    )
    assert (defaults.max_mounts, defaults.max_reason_chars) == (16, 1000)


async def test_a_worker_that_would_not_fit_one_message_is_refused(serve: ServeFactory) -> None:
    # a runtime whose message limit is small for its other limits: a request can fit while the
    # worker it creates (plus the 16 kB of headroom around it in an answer) would not
    served = await serve(limits=replace(Limits(), max_message_bytes=60 * 1024))
    client = served.client
    labels = {f"k{i:02}" + "x" * 200: "v" * 256 for i in range(64)}  # ~30 kB: fits
    await client.create_worker(labels=labels)
    big = {f"k{i:02}" + "x" * 250: "\u00e9" * 256 for i in range(64)}  # ~49 kB
    with pytest.raises(InvalidArgument) as info:
        await client.create_worker(labels=big)
    assert info.value.field == "labels"
    assert (await client.list_workers()).total_size == 1


async def test_diagnostics_are_cut_and_their_pages_fit_a_message(serve: ServeFactory) -> None:
    served = await serve(limits=replace(Limits(), max_message_bytes=256 * 1024))
    runtime, client = served.runtime, served.client
    # what a bug's exception text or a provider's notice could carry
    runtime._diagnose(DiagnosticLevel.WARNING, "HUGE", "h" * 1_000_000)
    for i in range(100):  # 100 x 16 kB (4-byte characters): 1.6 MB, over the 256 kB limit
        runtime._diagnose(DiagnosticLevel.WARNING, f"D{i}", "\N{GRINNING FACE}" * 5000)

    codes: list[str] = []
    token = ""
    pages = 0
    while True:
        page = await client.list_diagnostics(page_size=1000, page_token=token)
        codes += [d.code for d in page.items]
        pages += 1
        token = page.next_page_token
        if not token:
            break
    assert pages > 1
    assert codes[:100] == [f"D{i}" for i in reversed(range(100))]
    assert "HUGE" in codes
    events = [e async for e in _diagnostic_events(client)]
    (cut,) = [e for e in events if e.code == "HUGE"]
    assert len(cut.message) == 4096
    assert cut.message.endswith("\u2026")


async def _diagnostic_events(client: RuntimeClient) -> AsyncIterator[Diagnostic]:
    cursor = 0
    while True:
        page = await client.list_events(after_seq=cursor, page_size=1000)
        if not page.events:
            return
        for e in page.events:
            if isinstance(e.payload, Diagnostic):
                yield e.payload
        cursor = page.next_after_seq
