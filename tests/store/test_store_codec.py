"""The stored form: every payload type round-trips exactly, the kind names are pinned (they are on
disk), and bad bytes fail loudly (the package's public surface is pinned in
tests/test_public_surface.py)."""

from __future__ import annotations

import typing
from collections.abc import Callable

import pytest
from store_samples import FULL_MESSAGE, all_payloads, entry, run, worker

from engine import Message, Role
from runtime_server import model
from runtime_server.store import codec


def test_every_payload_type_has_a_codec() -> None:
    payload_types = set(typing.get_args(model.Payload))
    assert {type(p) for p in all_payloads()} == payload_types
    assert len(codec.PAYLOAD_KINDS) == len(payload_types)


@pytest.mark.parametrize("payload", all_payloads(), ids=lambda p: type(p).__name__)
def test_payload_round_trips_exactly(payload: model.Payload) -> None:
    kind, body = codec.encode_payload(payload)
    decoded = codec.decode_payload(kind, body)
    assert decoded == payload
    assert type(decoded) is type(payload)


def test_values_round_trip_exactly() -> None:
    for w in (worker(), worker(workspace=None, config_bundle=None, labels={})):
        assert codec.decode_worker(codec.encode_worker(w)) == w
    assert codec.decode_run(codec.encode_run(run())) == run()
    assert codec.decode_message(codec.encode_message(FULL_MESSAGE)) == FULL_MESSAGE
    assert codec.entry_from_obj(codec.entry_to_obj(entry())) == entry()


def test_bodies_are_compact() -> None:
    kind, body = codec.encode_payload(model.TextDelta("hi"))
    assert (kind, body) == ("text_delta", b'{"text":"hi"}')
    assert codec.encode_message(Message(Role.USER, "é")) == ('{"role":"user","text":"é"}'.encode())


def test_kind_names_are_pinned() -> None:
    # Stored in every events row: renaming one orphans existing data. Add, never rename.
    assert sorted(codec.PAYLOAD_KINDS) == [
        "diagnostic",
        "input_committed",
        "message_committed",
        "partial_discarded",
        "reasoning_delta",
        "run_finished",
        "run_queued",
        "run_started",
        "text_delta",
        "tool_call_finished",
        "tool_call_started",
        "usage_reported",
        "worker_created",
        "worker_deleted",
        "worker_state_changed",
        "worker_stopped",
    ]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("no_such_kind", b"{}"),
        ("text_delta", b"{}"),
        ("text_delta", b"[1]"),
        ("text_delta", b"not json"),
        ("worker_state_changed", b'{"previous":"NOPE","state":"IDLE"}'),
    ],
)
def test_bad_bodies_raise_codec_error(kind: str, body: bytes) -> None:
    with pytest.raises(codec.CodecError):
        codec.decode_payload(kind, body)


@pytest.mark.parametrize(
    "decode",
    [codec.decode_worker, codec.decode_run, codec.decode_message],
    ids=lambda f: f.__name__,
)
@pytest.mark.parametrize("body", [b"{}", b'{"role":"robot"}', b"\xff", b"null"])
def test_bad_value_bodies_raise_codec_error(decode: Callable[[bytes], object], body: bytes) -> None:
    with pytest.raises(codec.CodecError):
        decode(body)


def test_unknown_payload_type_raises_codec_error() -> None:
    with pytest.raises(codec.CodecError, match="no codec"):
        codec.encode_payload(object())  # type: ignore[arg-type]
