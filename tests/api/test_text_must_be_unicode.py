"""A string with a surrogate code point gets the same typed error embedded and remote.

A Python ``str`` can hold U+D800-U+DFFF (``json.loads('"\\ud800"')`` makes one) although UTF-8
cannot encode it. Before, the remote client failed with a bare ``UnicodeEncodeError`` (protobuf
cannot encode the request), while the embedded handle accepted the same call: it stored such a
display name as-is, and an input text with one made the SQLite writer fail — STORE_FAILURE for the
whole Runtime, the other workers' active runs INTERRUPTED. Now the Runtime's core refuses it
(``runtime_server.runtime._validation.check_unicode``) and the client refuses it before encoding
(``runtime_client._text``), both with INVALID_ARGUMENT naming the field, equal field for field.
Every call runs through a real grpc.aio server with the real client and through
``EmbeddedRuntime`` over the same Runtime.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import runtime_client as rc
from runtime_client.errors import InvalidArgument, RuntimeServiceError
from runtime_server.embedded import EmbeddedRuntime
from runtime_server.model import DiagnosticLevel, Event, Worker, WorkerCreated, WorkerState
from runtime_server.runtime import StoreState, parse_config
from runtime_server.store import PutWorker, SqliteStore

if TYPE_CHECKING:
    from serving import Served, ServeFactory

BOUND = 30.0
BAD = "x\ud800y"  # a lone high surrogate
W = "0190a0a0-0000-7000-8000-000000000000"
BUNDLE = b'[profiles.p]\nprovider = "builtin"\nmodel = "echo"\n'

Call = Callable[[Any], Awaitable[Any]]


@pytest.fixture
async def both(serve: ServeFactory) -> AsyncIterator[tuple[Served, EmbeddedRuntime, str]]:
    served = await serve()
    handle = EmbeddedRuntime(served.runtime)
    worker_id = (await served.client.create_worker(profile="slow")).worker.worker_id
    yield served, handle, worker_id
    await handle.close()


def calls(w: str) -> dict[str, tuple[str, Call]]:
    """{name: (the field the error must name, the call)} — one bad string per call."""
    ws = rc.Workspace(root="/tmp", mounts=(rc.Mount(path=f"/tmp/{BAD}"),))
    return {
        "create.worker_id": ("worker_id", lambda h: h.create_worker(worker_id=BAD)),
        "create.profile": ("profile", lambda h: h.create_worker(profile=BAD)),
        "create.display_name": ("display_name", lambda h: h.create_worker(display_name=BAD)),
        "create.label_key": ("labels", lambda h: h.create_worker(labels={BAD: "v"})),
        "create.label_value": ("labels[k]", lambda h: h.create_worker(labels={"k": BAD})),
        "create.request_id": ("request_id", lambda h: h.create_worker(request_id=BAD)),
        "create.workspace": ("workspace.mounts[0].path", lambda h: h.create_worker(workspace=ws)),
        "create.bundle": (
            "config_bundle.digest",
            lambda h: h.create_worker(config_bundle=rc.ConfigBundleRef("b", BAD)),
        ),
        "create.initial_input": ("initial_input", lambda h: h.create_worker(initial_input=BAD)),
        "create.capabilities": (
            "capabilities[1]",
            lambda h: h.create_worker(capabilities=["clock", BAD]),
        ),
        "get_worker": ("worker_id", lambda h: h.get_worker(BAD)),
        "list_workers.token": ("page_token", lambda h: h.list_workers(page_token=BAD)),
        "list_workers.labels": ("labels[k]", lambda h: h.list_workers(labels={"k": BAD})),
        "stop.reason": ("reason", lambda h: h.stop_worker(w, reason=BAD)),
        "delete": ("worker_id", lambda h: h.delete_worker(BAD)),
        "send.text": ("text", lambda h: h.send_input(w, f"hello {BAD}")),
        "send.request_id": ("request_id", lambda h: h.send_input(w, "hi", request_id=BAD)),
        "cancel_run": ("run_id", lambda h: h.cancel_run(BAD)),
        "get_run": ("run_id", lambda h: h.get_run(BAD)),
        "transcript": ("page_token", lambda h: h.get_transcript(w, page_token=BAD)),
        "list_events": ("worker_id", lambda h: h.list_events(worker_id=BAD)),
        "usage": ("worker_id", lambda h: h.get_usage(BAD)),
        "diagnostics": ("page_token", lambda h: h.list_diagnostics(page_token=BAD)),
        "claims": ("page_token", lambda h: h.list_workspace_claims(page_token=BAD)),
        "put_bundle.id": ("id", lambda h: h.put_bundle(BAD, BUNDLE)),
        "put_bundle.annotation": (
            "annotations[a]",
            lambda h: h.put_bundle("b", BUNDLE, annotations={"a": BAD}),
        ),
        "get_bundle": ("digest", lambda h: h.get_bundle("b", BAD)),
        "list_bundles": ("id", lambda h: h.list_bundles(id=BAD)),
        "delete_bundle": ("digest", lambda h: h.delete_bundle("b", BAD)),
        "subscribe.payload_types": ("payload_types[0]", lambda h: _first(h, [BAD])),
    }


async def _first(handle: Any, payload_types: list[str]) -> Any:
    async for event in handle.subscribe(payload_types=payload_types):
        return event
    return None


async def outcome(call: Call, handle: Any) -> Any:
    try:
        async with asyncio.timeout(BOUND):
            return ("ok", await call(handle))
    except RuntimeServiceError as exc:
        return ("error", type(exc), exc.reason, exc.code, exc.message, dict(exc.metadata))


@pytest.mark.parametrize("name", sorted(calls(W)))
async def test_both_paths_refuse_it_naming_the_field(
    both: tuple[Served, EmbeddedRuntime, str], name: str
) -> None:
    served, embedded, worker_id = both
    field, call = calls(worker_id)[name]
    before = sum(served.runtime.info().workers_by_state.values())
    remote = await outcome(call, served.client)
    local = await outcome(call, embedded)
    assert remote == local
    assert remote[:4] == (
        "error",
        InvalidArgument,
        "INVALID_ARGUMENT",
        rc.StatusCode.INVALID_ARGUMENT,
    )
    assert remote[5] == {"field": field}
    assert remote[4].startswith(f"{field}: is not valid Unicode: U+D800 at character ")
    assert sum(served.runtime.info().workers_by_state.values()) == before  # nothing was created


async def test_the_first_bad_field_in_message_order_is_named_on_both_paths(
    both: tuple[Served, EmbeddedRuntime, str],
) -> None:
    served, embedded, _ = both

    def call(h: Any) -> Any:
        return h.create_worker(initial_input=BAD, display_name=BAD, labels={"k": BAD})

    remote, local = await outcome(call, served.client), await outcome(call, embedded)
    assert remote == local
    assert remote[5] == {"field": "display_name"}


async def test_a_long_field_path_is_cut_alike(both: tuple[Served, EmbeddedRuntime, str]) -> None:
    served, embedded, _ = both
    key = "k" * 200

    def call(h: Any) -> Any:
        return h.create_worker(labels={key: BAD})

    remote, local = await outcome(call, served.client), await outcome(call, embedded)
    assert remote == local
    assert remote[5]["field"] == f"labels[{key}"[:127] + "\u2026"


async def test_valid_text_beyond_ascii_is_accepted(
    both: tuple[Served, EmbeddedRuntime, str],
) -> None:
    served, embedded, _ = both
    name = "caf\u00e9 \U0001f600 \u4e2d"  # an astral character is one code point, not a pair
    for handle in (served.client, embedded):
        created = await handle.create_worker(display_name=name, labels={"t": "\u00e9"})
        assert created.worker.display_name == name


async def test_an_embedded_sqlite_runtime_stays_writable_and_other_runs_go_on(
    tmp_path: Path,
) -> None:
    """The harm the check prevents: before, this input failed the SQLite writer and the busy
    worker's run ended INTERRUPTED."""
    store = SqliteStore(tmp_path / "runtime.sqlite3")
    config = {"profiles": {"slow": {"provider": "builtin", "options": {"delay_ms": 20}}}}
    async with await EmbeddedRuntime.open(parse_config(config), store=store) as rt:
        busy = (await rt.create_worker(profile="slow")).worker.worker_id
        run = (await rt.send_input(busy, "one two three four five six seven eight")).run
        victim = (await rt.create_worker()).worker.worker_id
        with pytest.raises(InvalidArgument) as info:
            await rt.send_input(victim, f"boom {BAD}")
        assert info.value.field == "text"
        finished = await rt.wait_run(run.run_id, timeout=BOUND)
        assert finished.state is rc.RunState.COMPLETED
        assert rt.runtime.info().store_state is StoreState.OK
        assert (await rt.send_input(victim, "still fine")).run.worker_id == victim


async def test_text_an_earlier_version_stored_reads_alike_on_both_paths(
    serve: ServeFactory, tmp_path: Path
) -> None:
    """A store written before the check can hold such text (here a display name; a diagnostic
    can quote one): the gRPC edge sends U+FFFD for it, and the embedded handle now does too
    (it returned the raw surrogate)."""
    path = tmp_path / "runtime.sqlite3"
    runtime_id, worker_id = "01a1fea1-0000-7000-8000-00000000abcd", W
    store = SqliteStore(path)
    await store.open(runtime_id)
    legacy = Worker(
        worker_id=worker_id,
        runtime_id=runtime_id,
        state=WorkerState.IDLE,
        profile="echo",
        display_name="legacy \udc80 name",
        labels={},
        created_at=1_700_000_000.0,
    )
    store.write(
        [Event(1, 1_700_000_000.0, worker_id, "", WorkerCreated(legacy))], [PutWorker(legacy)]
    )
    await store.flush()
    await store.close()

    served = await serve(store=SqliteStore(path))
    embedded = EmbeddedRuntime(served.runtime)
    served.runtime.diagnose(
        DiagnosticLevel.WARNING, "LEGACY", "quoted \ud800 text", worker_id=worker_id
    )
    for call in (
        lambda h: h.get_worker(worker_id),
        lambda h: h.list_workers(),
        lambda h: h.list_events(after_seq=0),
        lambda h: h.list_diagnostics(),
    ):
        remote, local = await outcome(call, served.client), await outcome(call, embedded)
        assert remote[0] == "ok", remote
        assert _without_raw(remote[1]) == _without_raw(local[1])
    worker = await embedded.get_worker(worker_id)
    assert worker.display_name == "legacy \ufffd name"
    diagnostics = (await embedded.list_diagnostics()).items
    assert any(d.message == "quoted \ufffd text" for d in diagnostics)
    await embedded.close()


def _without_raw(value: Any) -> Any:
    """Events compare without ``raw`` (the wire message; None embedded)."""
    if isinstance(value, rc.EventsPage):
        return [dataclasses.replace(e, raw=None) for e in value.events]
    return value
