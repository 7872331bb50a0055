"""The SQLite writer's hand-built JSON (``_sqlite_json``) writes exactly the codec's bytes for
every run, worker, usage, transcript entry and message it meets — the stored format is the
codec's, and a file written by the fast path must read back with any build — including the
values that leave its fast path: ints where floats are declared, bools, non-finite and
negative-zero floats, lone surrogates, nested fields, and a timestamp seen before (served from
its cache) next to a new one."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
from store_samples import FULL_MESSAGE, FULL_USAGE, entry, run, worker

from engine import Message, ReasoningBlock, Role, StopReason, Usage
from runtime_server.model import (
    InputCommitted,
    MessageCommitted,
    Run,
    RunError,
    RunState,
    Worker,
    WorkerState,
)
from runtime_server.store import _sqlite_json as fast
from runtime_server.store import _sqlite_rows as rows
from runtime_server.store import codec

_FLOATS = [0.0, -0.0, 1.0, 0.1, 1_700_000_000.125, 1e20, 1e-7, -3.5, math.inf, -math.inf, math.nan]


def _runs() -> list[Run]:
    out = [
        run(),
        run(error=None, usage=Usage(), stop_reason="", input_text=""),
        Run("r2", "w2", RunState.COMPLETED, 0.0),
        run(input_text="lone \ud83d surrogate", stop_reason='quote " and \\ \n'),
        run(error=RunError("E", "\udc00 bad"), usage=Usage(0, 0, 0, 0, 7)),
        run(created_at=5, started_at=True, finished_at=2**70),  # not floats: the codec's text
    ]
    out += [run(created_at=f, started_at=f, finished_at=f) for f in _FLOATS]
    return out


def _workers() -> list[Worker]:
    out = [
        worker(),  # every nested field set: the codec writes it
        Worker("w2", "rt", WorkerState.IDLE, "echo"),
        worker(labels={}, workspace=None, config_bundle=None),
        worker(labels={}, workspace=None, config_bundle=None, tools=None, capabilities=()),
        worker(labels={}, workspace=None, config_bundle=None, tools=(), queued_runs=True),
        worker(labels={"a": "b"}, workspace=None, config_bundle=None),
        worker(labels={}, workspace=None, config_bundle=None, display_name="\ud800 ✓"),
        worker(labels={}, workspace=None, config_bundle=None, usage=Usage(1, 0, 0, 0, 0)),
    ]
    out += [
        worker(labels={}, workspace=None, config_bundle=None, created_at=f, queued_runs=i)
        for i, f in enumerate(_FLOATS)
    ]
    return out


@pytest.mark.parametrize("with_input", [True, False])
def test_run_json_is_the_codecs(with_input: bool) -> None:
    for _ in range(2):  # the second pass serves the floats from the cache
        for r in _runs():
            want = codec.encode_run(r, with_input=with_input)
            assert fast.run_json(r, with_input=with_input).encode("utf-8", "surrogatepass") == want
            assert rows.encode_run(r, None, with_input=with_input) == want
            assert rows.encode_run(r, {}, with_input=with_input) == want


def test_worker_json_is_the_codecs() -> None:
    for _ in range(2):
        for w in _workers():
            want = codec.encode_worker(w)
            assert fast.blob(fast.worker_json(w)) == want


def test_usage_and_numbers_are_the_codecs() -> None:
    for u in (Usage(), FULL_USAGE, Usage(0, 3, 0, 0, 0), Usage(2**64, 1, 1, 1, 1)):
        want = codec.dumps(codec.usage_to_obj(u)).decode()
        assert (fast.usage_json(u) or "{}") == want
    for value in [*_FLOATS, 0, 1, -1, 10**30, True, False]:
        for _ in range(2):
            assert fast.number(value) == codec._dumps_text(value)  # type: ignore[arg-type]


def test_a_full_cache_starts_over() -> None:
    fast._FLOATS.clear()
    for i in range(fast._FLOATS_MAX + 10):
        assert fast.number(i + 0.5) == repr(i + 0.5)
    assert len(fast._FLOATS) <= fast._FLOATS_MAX
    assert fast.number(3.25) == "3.25"


def test_a_changed_run_is_encoded_anew_in_a_new_transaction() -> None:
    first = run(state=RunState.RUNNING, finished_at=0.0)
    done = replace(first, state=RunState.COMPLETED, finished_at=first.started_at + 1)
    for r in (first, done):
        assert rows.encode_run(r, {}, with_input=False) == codec.encode_run(r, with_input=False)


def _messages() -> list[Message]:
    return [
        FULL_MESSAGE,  # tool calls: the codec's own
        Message(Role.USER, "hi"),
        Message(Role.TOOL),
        Message(Role.ASSISTANT, "a\ud83d", stop_reason=StopReason.END_TURN, incomplete=True),
        Message(
            Role.ASSISTANT,
            "t",
            reasoning="r\n",
            reasoning_signature="s",
            tool_call_id="c",
            tool_name="n",
            is_error=True,
            reasoning_field="reasoning_content",
        ),
        Message(Role.ASSISTANT, reasoning_blocks=(ReasoningBlock("thinking", "x", "", ""),)),
    ]


def test_entry_and_message_json_are_the_codecs() -> None:
    for m in _messages():
        assert fast.message_json(m) == codec._dumps_text(codec.message_to_obj(m))
        for e in (entry(message=m), replace(entry(index=3, message=m), seq=42, created_at=0.0)):
            want = codec.encode_payload(MessageCommitted(e))
            assert rows.encode_payload(MessageCommitted(e), {}) == want
            assert rows.encode_payload(InputCommitted(e), {}) == codec.encode_payload(
                InputCommitted(e)
            )
