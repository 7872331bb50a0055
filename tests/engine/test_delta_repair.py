"""engine.wire.DeltaRepair and valid_text: provider text made valid Unicode (surrogates from JSON
``\\uXXXX`` escapes), case by case. The end-to-end behaviour through a served runtime is in
tests/api/test_provider_text_unicode.py."""

from __future__ import annotations

from engine import ReasoningDelta, StopReason, StreamStop, TextDelta
from engine.wire import DeltaRepair, valid_text

EMOJI = "\U0001f600"
HIGH, LOW = "\ud83d", "\ude00"  # EMOJI's UTF-16 pair


def run(*events: object) -> list[object]:
    repair = DeltaRepair()
    out = [repair.repair(e) for e in events]  # type: ignore[arg-type]
    kept: list[object] = [e for e in out if e is not None]
    return kept + list(repair.flush())


def test_valid_text_joins_pairs_and_replaces_lone_halves() -> None:
    assert valid_text("plain") == "plain"
    assert valid_text("caf\u00e9 " + EMOJI) == "caf\u00e9 " + EMOJI
    assert valid_text(HIGH + LOW) == EMOJI
    assert valid_text("a" + LOW + "b" + HIGH) == "a\ufffdb\ufffd"
    assert valid_text(valid_text("x" + HIGH)).encode()  # always UTF-8 encodable


def test_a_pair_split_over_two_deltas_arrives_whole_in_the_second() -> None:
    assert run(TextDelta("a" + HIGH), TextDelta(LOW + "b")) == [
        TextDelta("a"),
        TextDelta(EMOJI + "b"),
    ]


def test_a_delta_that_is_only_the_first_half_is_held_back() -> None:
    assert run(TextDelta(HIGH), TextDelta(LOW)) == [TextDelta(EMOJI)]


def test_a_high_half_never_completed_becomes_one_replacement_character() -> None:
    assert run(TextDelta("x" + HIGH), StreamStop(StopReason.END_TURN)) == [
        TextDelta("x"),
        StreamStop(StopReason.END_TURN),
        TextDelta("\ufffd"),
    ]
    assert run(TextDelta(HIGH), TextDelta("y")) == [TextDelta("\ufffdy")]


def test_text_and_reasoning_are_paired_separately() -> None:
    out = run(
        ReasoningDelta("think" + HIGH, field="reasoning"),
        TextDelta("say" + HIGH),
        ReasoningDelta(LOW, field="reasoning"),
        TextDelta(LOW),
    )
    assert out == [
        ReasoningDelta("think", field="reasoning"),
        TextDelta("say"),
        ReasoningDelta(EMOJI, field="reasoning"),
        TextDelta(EMOJI),
    ]


def test_clean_deltas_pass_through_as_the_same_objects() -> None:
    repair = DeltaRepair()
    for event in (
        TextDelta("hello"),
        TextDelta("caf\u00e9 " + EMOJI),
        StreamStop(StopReason.END_TURN),
    ):
        assert repair.repair(event) is event
    assert repair.flush() == []


def test_engine_error_messages_are_valid_text() -> None:
    # a provider's error body is JSON too: its message can hold a lone surrogate
    from engine import ProviderHTTPError

    assert ProviderHTTPError("upstream: \udc80!", status=500).message == "upstream: \ufffd!"
    assert str(ProviderHTTPError("ok", status=500)) == "ok"
