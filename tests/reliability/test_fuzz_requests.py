"""Guarantee 7 under fuzzing, against a real ``serve`` process: thousands of requests to every
method of every service, and never an UNKNOWN or INTERNAL answer — a caller's mistake is always
a typed error — and the server still serves afterwards (GetRuntime answers, a normal run
completes).

- Structured requests are built from the real protobuf classes, walking each request message's
  descriptor: every field set (or left unset) at random to empty, huge (up to 900,000
  characters), 4-byte unicode, NUL, negative and boundary integers, unknown enum values, up to
  200 repeated elements or map entries, and ids that are real, unknown, or spelled otherwise.
- Raw requests send bytes that are not what the method expects (random bytes, and real messages
  with flipped bits, truncated, or with invalid UTF-8 in a string) through a channel with identity
  serializers. A body that does not decode must be INVALID_ARGUMENT; one that happens to decode is
  held to the structured rule.

Deterministic (fixed seed) and bounded in time; run with ``-s`` to see the answers by status
code.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2, status_pb2
from serving import ServeProcessFactory

from runtime_client import RunState, RuntimeClient
from runtime_client.api import catalog_service_pb2 as cpb
from runtime_client.api import config_service_pb2 as cfpb
from runtime_client.api import interaction_service_pb2 as ipb
from runtime_client.api import management_service_pb2 as mpb
from runtime_client.api import observation_service_pb2 as opb

SEED = 20261127
STRUCTURED = 2400
RAW = 800
CONCURRENCY = 16
STREAM_WAIT = 0.5  # seconds to wait for a stream's first message (then it is simply open)
BOUND = 60.0  # seconds: a safety net per call, not a speed assertion
FORBIDDEN = {grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL}
TYPED_EXHAUSTED = {
    "QUEUE_FULL",
    "TOO_MANY_WORKERS",
    "TOO_MANY_SUBSCRIBERS",
    "SUBSCRIBER_LAGGING",
    "MEMORY_BUDGET_EXCEEDED",
    "TOO_MANY_CONFIG_BUNDLES",
}
MAX_MESSAGE_BYTES = 4 * 1024 * 1024  # serve's default receive limit


@dataclass(frozen=True)
class Method:
    path: str
    name: str
    request: Descriptor
    streaming: bool


def methods() -> list[Method]:
    out = []
    for module in (mpb, cpb, ipb, opb, cfpb):
        for service in module.DESCRIPTOR.services_by_name.values():
            for m in service.methods:
                out.append(
                    Method(
                        f"/{service.full_name}/{m.name}", m.name, m.input_type, m.server_streaming
                    )
                )
    return out


class Values:
    """Random field values, from a pool of awkward ones plus real ids of the server under test."""

    def __init__(self, rng: random.Random, ids: list[str]) -> None:
        self.rng = rng
        u = str(uuid.uuid4())
        real = ids[0]
        big = "\N{GRINNING FACE}"
        self.strings = [
            "",
            "",
            "a",
            "echo",
            "slow",
            "/srv/data",
            "relative/path",
            "sha256:" + "ab" * 32,
            "\x00",
            "a\x00b",
            "\u202e\u0301\ufeff",  # RTL override, a combining mark, a BOM
            big,
            big * 300,
            u,
            u.upper(),
            "{" + u + "}",
            "urn:uuid:" + u,
            u.replace("-", ""),
            real.upper(),
            "x" * 129,
            "x" * 257,
            "p" * 1001,
            "/" + "d" * 4096,
            "i" * 6000,
            "i" * 10_000,
            "w" * 100_000,
            big * 200_000,
            "z" * 900_000,
            *ids,
            *ids,
        ]
        self.ints = [0, 0, 1, -1, 2, 100, 1000, 1001, 2**31 - 1, -(2**31)]
        self.uints = [0, 0, 1, 2, 5, 100, 2**32 - 1, 2**63 - 1, 2**64 - 1]

    def string(self) -> str:
        if self.rng.random() < 0.3:  # short random text
            alphabet = self.rng.choice(("abc ", "日本語", "\N{ROCKET}\u00e9", "\t\n\r "))
            return "".join(self.rng.choice(alphabet) for _ in range(self.rng.randint(0, 40)))
        return self.rng.choice(self.strings)

    def scalar(self, f: FieldDescriptor) -> Any:
        t = f.type
        if t == FieldDescriptor.TYPE_STRING:
            return self.string()
        if t == FieldDescriptor.TYPE_BYTES:
            return self.rng.randbytes(self.rng.choice((0, 1, 16, 1000)))
        if t == FieldDescriptor.TYPE_BOOL:
            return self.rng.random() < 0.5
        if t == FieldDescriptor.TYPE_ENUM:
            known = [v.number for v in f.enum_type.values]
            return self.rng.choice([*known, *known, 7, 99, -1, 2**31 - 1])
        if t in (FieldDescriptor.TYPE_UINT32, FieldDescriptor.TYPE_FIXED32):
            return self.rng.choice([v for v in self.uints if v < 2**32])
        if t in (FieldDescriptor.TYPE_UINT64, FieldDescriptor.TYPE_FIXED64):
            return self.rng.choice(self.uints)
        if t in (FieldDescriptor.TYPE_INT64, FieldDescriptor.TYPE_SINT64):
            return self.rng.choice([*self.ints, 2**63 - 1, -(2**63)])
        if t in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
            return self.rng.choice((0.0, -1.0, 1e300, float("inf"), float("nan")))
        return self.rng.choice(self.ints)  # int32, sint32, sfixed32

    def message(self, desc: Descriptor, depth: int = 0) -> Message:
        msg = message_factory.GetMessageClass(desc)()
        for f in desc.fields:
            if self.rng.random() < 0.3:
                continue
            if f.message_type is not None and f.message_type.GetOptions().map_entry:
                key, value = (
                    f.message_type.fields_by_name["key"],
                    f.message_type.fields_by_name["value"],
                )
                target = getattr(msg, f.name)
                for _ in range(self.rng.choice((0, 1, 3, 65, 200))):
                    k = self.scalar(key)
                    target[k if len(k) < 5000 else k[:5000]] = self.scalar(value)
            elif f.is_repeated:
                items = getattr(msg, f.name)
                for _ in range(self.rng.choice((0, 1, 2, 33, 200))):
                    if f.message_type is not None:
                        items.add().CopyFrom(self.message(f.message_type, depth + 1))
                    else:
                        items.append(self.scalar(f))
            elif f.message_type is not None:
                if depth < 3:
                    getattr(msg, f.name).CopyFrom(self.message(f.message_type, depth + 1))
            else:
                setattr(msg, f.name, self.scalar(f))
        return msg


def corrupt(rng: random.Random, valid: bytes) -> bytes:
    """Bytes that are not a valid request: random, or a real one damaged."""
    kind = rng.randrange(5)
    if kind == 0 or not valid:
        return rng.randbytes(rng.choice((1, 2, 7, 64, 1000, 100_000)))
    data = bytearray(valid)
    if kind == 1:  # flipped bits
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
        return bytes(data)
    if kind == 2:  # truncated mid-field
        return bytes(data[: rng.randrange(len(data))])
    if kind == 3:  # field 1 as a string of invalid UTF-8
        return b"\x0a\x04\xff\xfe\xc3\x28" + bytes(data)
    return bytes(data) + b"\x0a\xff\xff\xff\xff\x0f"  # a length past the end


def reason_of(exc: grpc.aio.AioRpcError) -> str:
    """The ErrorInfo reason the Runtime attached ("" when the error is grpc's own)."""
    for key, value in exc.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            for detail in status_pb2.Status.FromString(value).details:
                info = error_details_pb2.ErrorInfo()
                if detail.Unpack(info):
                    return str(info.reason)
    return ""


Result = tuple[Method, str, grpc.StatusCode, bytes, str]


async def call(
    channel: grpc.aio.Channel, method: Method, body: bytes, stream_wait: float = STREAM_WAIT
) -> tuple[grpc.StatusCode, str]:
    """Send ``body`` as the request of ``method``; the status it is answered with (OK for a
    stream that delivered something or stayed open for ``stream_wait`` seconds) and the
    ErrorInfo reason."""
    try:
        if not method.streaming:
            stub = channel.unary_unary(method.path)  # identity serializers: bytes in, bytes out
            await stub(body, timeout=BOUND)
            return grpc.StatusCode.OK, ""
        stream = channel.unary_stream(method.path)(body, timeout=BOUND)
        try:
            await asyncio.wait_for(stream.read(), stream_wait)
        except TimeoutError:
            pass  # open and quiet: a valid subscription
        finally:
            stream.cancel()
        return grpc.StatusCode.OK, ""
    except grpc.aio.AioRpcError as exc:
        return exc.code(), reason_of(exc)


async def run_all(channel: grpc.aio.Channel, jobs: list[tuple[Method, bytes, str]]) -> list[Result]:
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: tuple[Method, bytes, str]) -> Result:
        method, body, kind = job
        # A stream whose request does not decode must end INVALID_ARGUMENT: wait for that answer
        # (it comes, however loaded the machine) instead of taking a late one for an open stream.
        wait = BOUND if kind == "raw" and not _decodes(method, body) else STREAM_WAIT
        async with gate:
            code, reason = await call(channel, method, body, wait)
            return method, kind, code, body, reason

    return await asyncio.gather(*(one(j) for j in jobs))


async def seeded_server(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> tuple[Any, RuntimeClient, list[str]]:
    sp = await serve_process(tmp_path / "data")
    client = sp.client()
    ids = []
    for _ in range(3):
        worker = (await client.create_worker()).worker.worker_id
        run = (await client.send_input(worker, "fuzz seed")).run.run_id
        await client.wait_run(run, timeout=BOUND)
        ids += [worker, run]
    return sp, client, ids


async def still_serves(client: RuntimeClient) -> None:
    await client.get_runtime()
    worker = (await client.create_worker(profile="echo")).worker.worker_id
    accepted = await client.send_input(worker, "still serving after the fuzz")
    run = await client.wait_run(accepted.run.run_id, timeout=BOUND)
    assert run.state is RunState.COMPLETED
    texts = [e.message.text async for e in client.iter_transcript(worker)]
    assert texts == ["still serving after the fuzz"] * 2


def report(title: str, results: list[Result], s: float) -> None:
    by_code = Counter(code.name for _, _, code, _, _ in results)
    print(f"\n{title}: {len(results)} requests in {s:.1f} s; by status: {dict(by_code)}")


def offending(results: list[Result]) -> list[str]:
    """UNKNOWN and INTERNAL answers; and RESOURCE_EXHAUSTED that is neither a Runtime bound
    (QUEUE_FULL, ...) nor grpc refusing a request over the receive limit — i.e. an answer or an
    error too large to send (an unbounded page, an echo past the metadata limit)."""
    bad = []
    for m, kind, code, body, reason in results:
        if code in FORBIDDEN:
            bad.append(f"{m.name} {kind} -> {code.name}")
        elif code is grpc.StatusCode.RESOURCE_EXHAUSTED and not (
            reason in TYPED_EXHAUSTED or len(body) > MAX_MESSAGE_BYTES
        ):
            bad.append(f"{m.name} {kind} ({len(body)} bytes) -> RESOURCE_EXHAUSTED {reason!r}")
    return bad


async def test_structured_fuzz_never_answers_unknown_or_internal(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    sp, client, ids = await seeded_server(serve_process, tmp_path)
    rng = random.Random(SEED)
    values = Values(rng, ids)
    all_methods = methods()
    assert len(all_methods) >= 16  # every RPC of the four services
    jobs = []
    for i in range(STRUCTURED):
        method = all_methods[i % len(all_methods)]
        jobs.append((method, values.message(method.request).SerializeToString(), "structured"))
    rng.shuffle(jobs)

    start = time.monotonic()
    async with grpc.aio.insecure_channel(sp.target) as channel:
        results = await run_all(channel, jobs)
    report("structured fuzz", results, time.monotonic() - start)

    assert offending(results) == []
    assert {r[0].name for r in results} == {m.name for m in all_methods}
    await still_serves(client)


async def test_raw_bytes_fuzz_is_invalid_argument(
    serve_process: ServeProcessFactory, tmp_path: Path
) -> None:
    sp, client, ids = await seeded_server(serve_process, tmp_path)
    rng = random.Random(SEED + 1)
    values = Values(rng, ids)
    all_methods = methods()
    jobs = []
    for i in range(RAW):
        method = all_methods[i % len(all_methods)]
        valid = values.message(method.request).SerializeToString()
        jobs.append((method, corrupt(rng, valid), "raw"))

    start = time.monotonic()
    async with grpc.aio.insecure_channel(sp.target) as channel:
        results = await run_all(channel, jobs)
    report("raw-bytes fuzz", results, time.monotonic() - start)

    decodes: Callable[[Method, bytes], bool] = _decodes
    # grpc refuses a body over its receive limit before anything decodes it
    undecodable = [
        (m, code)
        for m, _, code, body, _ in results
        if len(body) <= MAX_MESSAGE_BYTES and not decodes(m, body)
    ]
    assert undecodable, "the corpus must hold bodies that do not decode"
    wrong = [
        f"{m.name} -> {code.name}"
        for m, code in undecodable
        if code is not grpc.StatusCode.INVALID_ARGUMENT
    ]
    assert wrong == []
    assert offending(results) == []
    await still_serves(client)


def _decodes(method: Method, body: bytes) -> bool:
    try:
        message_factory.GetMessageClass(method.request).FromString(body)
    except DecodeError:
        return False
    return True
