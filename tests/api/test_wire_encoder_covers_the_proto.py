"""The hand encoder of grpc/_wire writes each field of the messages it encodes by number; a field
added to one of them in proto/ would be silently left out of every streamed event. This pins the
fields it writes against the generated descriptors: a new field fails here until _wire encodes it
(and this list names it). The byte-for-byte comparison with protobuf's own encoding is
tests/api/test_event_wire_bytes.py."""

from __future__ import annotations

import pytest

from runtime_client.api import types_pb2 as pb

# message -> the (field, number) pairs grpc/_wire.py writes by hand
HAND_ENCODED: dict[str, set[tuple[str, int]]] = {
    "Event": {("seq", 1), ("worker_id", 2), ("run_id", 3), ("time", 4)},  # + its payload oneof
    "Run": {
        ("run_id", 1), ("worker_id", 2), ("state", 3), ("created_at", 4), ("started_at", 5),
        ("finished_at", 6), ("usage", 7), ("error", 8), ("stop_reason", 9),
    },
    "RunError": {("code", 1), ("message", 2)},
    "Usage": {
        ("input_tokens", 1), ("output_tokens", 2), ("cache_read_tokens", 3),
        ("cache_write_tokens", 4), ("reasoning_tokens", 5), ("total_tokens", 6),
    },
    "Message": {
        ("role", 1), ("text", 2), ("reasoning", 3), ("tool_calls", 4), ("tool_call_id", 5),
        ("tool_name", 6), ("is_error", 7), ("stop_reason", 8), ("incomplete", 70),
    },
    "ToolCall": {("call_id", 1), ("name", 2), ("arguments", 3)},
    "TranscriptEntry": {
        ("worker_id", 1), ("index", 2), ("run_id", 3), ("created_at", 4), ("message", 5),
        ("seq", 140),
    },
    "WorkerStateChanged": {("previous", 1), ("state", 2)},
    "TextDelta": {("text", 1)},
    "ReasoningDelta": {("text", 1)},
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(HAND_ENCODED))
def test_the_hand_encoder_knows_every_field(name: str) -> None:
    descriptor = getattr(pb, name).DESCRIPTOR
    fields = {(f.name, f.number) for f in descriptor.fields if f.containing_oneof is None}
    assert fields == HAND_ENCODED[name], (
        f"{name}'s fields changed: update runtime_server/grpc/_wire.py's hand encoder, then this "
        "list"
    )
