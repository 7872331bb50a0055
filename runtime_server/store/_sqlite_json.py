"""The SQLite writer's JSON for the records it writes on every run — runs, workers, usage,
transcript entries and their messages — built
as text directly, byte for byte what ``_codec`` writes (tests pin it), for less CPU.

Why: the writer thread's Python competes with the busy event loop for the GIL, and encoding was
the largest part of it. ``_codec`` builds a dict per record and hands it to the C JSON encoder;
this writes the same text from the fields, in the same key order, under the same omission rule
(a field holding its type's zero value is left out). Two costs go: the dicts, and most
``float.__repr__`` calls — a float's shortest repr costs thousands of instructions, and the same
timestamps recur in every record of a run and of its worker (``created_at``, ``started_at``), so
their text is cached (a small bounded table, keyed by the float's value).

Anything unusual — a value that is not the expected exact type (an int where a float is
declared, a bool), a non-finite float, the rare nested fields (labels, workspace, bundle,
capabilities, tools, error) — goes through the codec's own encoder, so the text never differs.
Bodies come out as ``bytearray``: the sqlite3 module binds a bytearray directly, while ``bytes``
goes through its adapter lookup first (about 2,000 instructions a value, measured).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from engine import Message, Usage
from runtime_server.model import Run, TranscriptEntry, Worker
from runtime_server.store import _codec as codec

_dumps = codec._dumps_text
_str = codec._encode_str

# float value -> its JSON text. Bounded: cleared when full (a run's timestamps are reused within
# its few transactions, a worker's creation time for its lifetime; both are cheap to recompute).
_FLOATS: dict[float, str] = {}
_FLOATS_MAX = 4096
_ENUMS: dict[Enum, str] = {}


def blob(text: str) -> bytearray:
    """A body's bytes, as the codec encodes them (UTF-8, lone surrogates kept)."""
    return bytearray(text, "utf-8", "surrogatepass")


def number(value: Any) -> str:
    """A float's (or any number's) JSON text, as the C encoder writes it."""
    if value.__class__ is float and value:  # (0.0 and -0.0 compare equal: not cached)
        text = _FLOATS.get(value)
        if text is None:
            text = float.__repr__(value)
            if text[-1] in "fn":  # inf, -inf, nan: the encoder's Infinity/NaN spelling
                return _dumps(value)  # type: ignore[arg-type]
            if len(_FLOATS) >= _FLOATS_MAX:
                _FLOATS.clear()
            _FLOATS[value] = text
        return text
    if value.__class__ is int:
        return int.__repr__(value)
    return _dumps(value)


def _enum(member: Enum) -> str:
    text = _ENUMS.get(member)
    if text is None:
        text = _ENUMS[member] = _dumps(member.value)
    return text


def usage_json(usage: Usage) -> str:
    """``codec.usage_to_obj``'s JSON; ``""`` when every count is zero (the field is omitted)."""
    parts = []
    if usage.input_tokens:
        parts.append('"input_tokens":' + number(usage.input_tokens))
    if usage.output_tokens:
        parts.append('"output_tokens":' + number(usage.output_tokens))
    if usage.cache_read_tokens:
        parts.append('"cache_read_tokens":' + number(usage.cache_read_tokens))
    if usage.cache_write_tokens:
        parts.append('"cache_write_tokens":' + number(usage.cache_write_tokens))
    if usage.reasoning_tokens:
        parts.append('"reasoning_tokens":' + number(usage.reasoning_tokens))
    return "{" + ",".join(parts) + "}" if parts else ""


def run_json(run: Run, *, with_input: bool = True) -> str:
    """``codec.run_to_obj``'s JSON (``with_input=False``: as if ``input_text`` were empty)."""
    # (f-strings: one join, where a chain of + copies the growing text at every step)
    text = (
        f'{{"run_id":{_str(run.run_id)},"worker_id":{_str(run.worker_id)}'
        f',"state":{_enum(run.state)},"created_at":{number(run.created_at)}'
    )
    if with_input and run.input_text:
        text += ',"input_text":' + _str(run.input_text)
    if run.started_at:
        text += ',"started_at":' + number(run.started_at)
    if run.finished_at:
        text += ',"finished_at":' + number(run.finished_at)
    usage = usage_json(run.usage)
    if usage:
        text += ',"usage":' + usage
    if run.error is not None:
        text += ',"error":' + _dumps([run.error.code, run.error.message])  # type: ignore[arg-type]
    if run.stop_reason:
        text += ',"stop_reason":' + _str(run.stop_reason)
    return text + "}"


def worker_json(worker: Worker) -> str:
    """``codec.worker_to_obj``'s JSON."""
    text = (
        f'{{"worker_id":{_str(worker.worker_id)},"runtime_id":{_str(worker.runtime_id)}'
        f',"state":{_enum(worker.state)},"profile":{_str(worker.profile)}'
    )
    if worker.display_name:
        text += ',"display_name":' + _str(worker.display_name)
    if worker.labels or worker.workspace is not None or worker.config_bundle is not None:
        # the rare nested fields: the codec writes the whole record
        return _dumps(codec.worker_to_obj(worker))
    if worker.active_run_id:
        text += ',"active_run_id":' + _str(worker.active_run_id)
    if worker.created_at:
        text += ',"created_at":' + number(worker.created_at)
    usage = usage_json(worker.usage)
    if usage:
        text += ',"usage":' + usage
    if worker.queued_runs:
        text += ',"queued_runs":' + number(worker.queued_runs)
    if worker.capabilities:
        text += ',"capabilities":' + _dumps(list(worker.capabilities))  # type: ignore[arg-type]
    if worker.tools is not None:
        text += ',"tools":' + _dumps(list(worker.tools))  # type: ignore[arg-type]
    return text + "}"


def message_json(message: Message) -> str:
    """``codec.message_to_obj``'s JSON (tool calls and reasoning blocks: the codec's own)."""
    if message.tool_calls or message.reasoning_blocks:
        return _dumps(codec.message_to_obj(message))
    text = '{"role":' + _enum(message.role)
    if message.text:
        text += ',"text":' + _str(message.text)
    if message.reasoning:
        text += ',"reasoning":' + _str(message.reasoning)
    if message.reasoning_signature:
        text += ',"reasoning_signature":' + _str(message.reasoning_signature)
    if message.tool_call_id:
        text += ',"tool_call_id":' + _str(message.tool_call_id)
    if message.tool_name:
        text += ',"tool_name":' + _str(message.tool_name)
    if message.is_error:
        text += ',"is_error":' + number(message.is_error)
    if message.stop_reason is not None:
        text += ',"stop_reason":' + _enum(message.stop_reason)
    if message.incomplete:
        text += ',"incomplete":' + number(message.incomplete)
    if message.reasoning_field:
        text += ',"reasoning_field":' + _str(message.reasoning_field)
    return text + "}"


def entry_json(entry: TranscriptEntry, message: str) -> str:
    """``codec.entry_to_obj``'s JSON, around the entry's ``message_json``."""
    text = (
        f'{{"worker_id":{_str(entry.worker_id)},"index":{number(entry.index)}'
        f',"run_id":{_str(entry.run_id)},"message":{message}'
        f',"created_at":{number(entry.created_at)}'
    )
    if entry.seq:
        text += ',"seq":' + number(entry.seq)
    return text + "}"
