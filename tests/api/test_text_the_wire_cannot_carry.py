"""A string protobuf cannot encode never breaks a read (grpc/_convert.wire_safe).

The store keeps text exactly, lone UTF-16 surrogates included, and a store written before the
engine repaired provider text (engine._unicode) can hold some — as can a diagnostic whose message
quotes an exception. One such event made every read after it fail with INTERNAL: ListEvents over
the whole log, every subscription's replay (on every reconnect), the transcript. Now a conversion
that meets one retries on a copy with the lone surrogate replaced by U+FFFD: the rest of the text,
the event's seq and every other event are delivered as they are.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from runtime_client import Diagnostic as ClientDiagnostic
from runtime_client.api import types_pb2 as pb
from runtime_server.grpc import EventCache
from runtime_server.grpc import convert as cv
from runtime_server.model import DiagnosticLevel, Event, RunError, TextDelta

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "store"))
from store_samples import FULL_MESSAGE, entry, run

if TYPE_CHECKING:
    from serving import ServeFactory

BOUND = 20.0


def test_an_event_with_a_lone_surrogate_is_encoded_with_a_replacement() -> None:
    event = Event(7, 1_700_000_000.5, "w1", "r1", TextDelta("tok \ud800 end"))
    message = pb.Event.FromString(EventCache().encode(event))
    assert (message.seq, message.worker_id, message.text_delta.text) == (7, "w1", "tok \ufffd end")
    assert EventCache().convert(event).text_delta.text == "tok \ufffd end"
    assert cv.event(event).text_delta.text == "tok \ufffd end"


def test_transcript_entries_runs_and_diagnostics_convert_too() -> None:
    assert "\ud83d" in FULL_MESSAGE.text
    converted = cv.entry(entry())
    assert converted.message.text == FULL_MESSAGE.text.replace("\ud83d", "\ufffd")
    assert converted.message.tool_calls[0].name == "read_file"  # the rest as it was
    bad_error = run(error=RunError("PROVIDER_ERROR", "upstream said \udc80"))
    assert cv.run(bad_error).error.message == "upstream said \ufffd"


@pytest.mark.parametrize("batched", [True, False])
async def test_a_served_runtime_delivers_the_log_around_such_an_event(
    serve: ServeFactory, batched: bool
) -> None:
    served = await serve()
    client = served.client
    before = (await client.create_worker()).seq
    served.runtime.diagnose(DiagnosticLevel.WARNING, "LEGACY_TEXT", "quoted \udc80 bytes")
    after = (await client.create_worker()).seq

    listed = (await client.list_events(after_seq=before - 1)).events
    assert listed[0].seq == before
    assert listed[-1].seq == after
    [diag] = [e.payload for e in listed if isinstance(e.payload, ClientDiagnostic)]
    assert diag.message == "quoted \ufffd bytes"

    seen = []
    async with asyncio.timeout(BOUND):
        async for ev in client.subscribe(after_seq=before - 1, batched=batched):
            seen.append(ev.seq)
            if ev.seq == after:
                break
    assert seen == [e.seq for e in listed]
    diagnostics = (await client.list_diagnostics()).items
    assert any(d.message == "quoted \ufffd bytes" for d in diagnostics)
