"""Bare grpc.aio echo throughput, to compare grpcio x protobuf version pairs.

What it measures (server and client in one process, one asyncio loop,
127.0.0.1, an ephemeral port, no TLS, no project code, no generated code):

* ``unary_seq``      unary calls/s, one caller after another on one channel
* ``unary_conc``     unary calls/s, ``--concurrency`` callers sharing one channel
* ``stream_one``     messages/s of one server stream
* ``stream_many``    total messages/s of ``--streams`` concurrent server streams

The service is registered with ``grpc.method_handlers_generic_handler``; its
messages are the well-known ``google.protobuf.wrappers_pb2`` types
(``BytesValue`` for the unary echo, ``StringValue`` for the stream), with
``SerializeToString`` / ``FromString`` as (de)serializers, so the script
runs unchanged against any grpcio x protobuf combination that imports.
The payload is ``--payload`` bytes (default 64: a few short string fields).

It prints one JSON line: the versions (grpcio, protobuf, the protobuf
implementation reported by ``api_implementation.Type()``, Python) and, per
metric, the median, min and max over ``--repeat`` rounds (each round uses a
fresh server and channel) plus the raw values, for throughput and, nested as
``cpu_us_per_op``, for the process CPU time per call or message (all threads;
steadier than throughput when other programs compete for the cores).

Run it with the interpreter of each virtualenv you want to compare, e.g.::

    python3 -m venv /tmp/v1 && /tmp/v1/bin/pip install grpcio==1.70.0 protobuf==5.29.5
    python3 -m venv /tmp/v2 && /tmp/v2/bin/pip install grpcio==1.85.1 protobuf==7.36.2
    for i in 1 2 3 4 5; do
        for v in /tmp/v1 /tmp/v2; do $v/bin/python bench/grpc_versions.py --label "$v"; done
    done

Interleave the environments like that (rather than running all rounds of one
and then the other) so that machine noise hits every combination alike.
``--repeat N`` repeats the measurement inside one process instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import grpc
import grpc.aio
from google.protobuf import __version__ as protobuf_version
from google.protobuf.internal import api_implementation
from google.protobuf.wrappers_pb2 import BytesValue, StringValue

SERVICE = "bench.Echo"
UNARY_METHOD = f"/{SERVICE}/Unary"
STREAM_METHOD = f"/{SERVICE}/Stream"
METRICS = ("unary_seq", "unary_conc", "stream_one", "stream_many")


def make_payload(size: int) -> str:
    """A printable payload of ``size`` characters, like a few string fields."""
    base = "worker=w-0007|task=t-000123|state=RUNNING|note=hello from the bench|"
    return (base * (size // len(base) + 1))[:size]


class EchoService:
    """Handlers for the generic echo service."""

    def __init__(self, payload: str) -> None:
        self.payload = payload

    async def unary(
        self, request: BytesValue, context: grpc.aio.ServicerContext[BytesValue, BytesValue]
    ) -> BytesValue:
        return BytesValue(value=request.value)

    async def stream(
        self, request: StringValue, context: grpc.aio.ServicerContext[StringValue, StringValue]
    ) -> AsyncIterator[StringValue]:
        payload = self.payload
        for _ in range(int(request.value)):
            yield StringValue(value=payload)


def add_echo_service(server: grpc.aio.Server, service: EchoService) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                service.unary,
                request_deserializer=BytesValue.FromString,
                response_serializer=BytesValue.SerializeToString,
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(
                service.stream,
                request_deserializer=StringValue.FromString,
                response_serializer=StringValue.SerializeToString,
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))


@dataclass(frozen=True)
class Sample:
    """One measurement: throughput, and process CPU time per operation.

    CPU time counts every thread of the process (grpc's C-core threads too), so
    it is less disturbed than throughput when other programs share the cores.
    """

    rate: float
    cpu_us: float


async def timed(coro_factory: Callable[[], Awaitable[int]]) -> Sample:
    """Run the coroutine, which returns a count of operations, and measure it."""
    cpu_start = time.process_time()
    start = time.perf_counter()
    count = await coro_factory()
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    return Sample(rate=count / elapsed, cpu_us=cpu / count * 1e6)


async def one_round(args: argparse.Namespace) -> dict[str, Sample]:
    payload = make_payload(args.payload)
    server = grpc.aio.server()
    add_echo_service(server, EchoService(payload))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            unary = channel.unary_unary(
                UNARY_METHOD,
                request_serializer=BytesValue.SerializeToString,
                response_deserializer=BytesValue.FromString,
            )
            stream = channel.unary_stream(
                STREAM_METHOD,
                request_serializer=StringValue.SerializeToString,
                response_deserializer=StringValue.FromString,
            )
            raw = payload.encode()

            async def unary_calls(n: int) -> int:
                for _ in range(n):
                    reply = await unary(BytesValue(value=raw))
                    if len(reply.value) != len(raw):
                        raise RuntimeError("bad echo")
                return n

            async def unary_concurrent() -> int:
                per_caller = max(1, args.concurrent_calls // args.concurrency)
                counts = await asyncio.gather(
                    *(unary_calls(per_caller) for _ in range(args.concurrency))
                )
                return sum(counts)

            async def read_stream(n: int) -> int:
                got = 0
                async for msg in stream(StringValue(value=str(n))):
                    got += len(msg.value) > 0
                if got != n:
                    raise RuntimeError(f"stream returned {got} of {n} messages")
                return got

            async def streams_concurrent() -> int:
                counts = await asyncio.gather(
                    *(read_stream(args.msgs_per_stream) for _ in range(args.streams))
                )
                return sum(counts)

            # Warm up the connection and both code paths.
            await unary_calls(200)
            await read_stream(2000)

            return {
                "unary_seq": await timed(lambda: unary_calls(args.unary_calls)),
                "unary_conc": await timed(unary_concurrent),
                "stream_one": await timed(lambda: read_stream(args.stream_msgs)),
                "stream_many": await timed(streams_concurrent),
            }
    finally:
        await server.stop(None)


def spread(values: list[float]) -> dict[str, object]:
    return {
        "median": round(statistics.median(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
        "runs": [round(v, 1) for v in values],
    }


def summarize(rounds: list[dict[str, Sample]]) -> dict[str, dict[str, object]]:
    """Per metric: throughput spread at the top level, CPU us/op spread nested."""
    out: dict[str, dict[str, object]] = {}
    for metric in METRICS:
        out[metric] = spread([r[metric].rate for r in rounds])
        out[metric]["cpu_us_per_op"] = spread([r[metric].cpu_us for r in rounds])
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--repeat", type=int, default=1, help="rounds in this process (default 1)")
    p.add_argument("--label", default="", help="free text copied into the JSON line")
    p.add_argument("--payload", type=int, default=64, help="payload bytes per message")
    p.add_argument("--unary-calls", type=int, default=3000, help="sequential unary calls")
    p.add_argument("--concurrency", type=int, default=50, help="concurrent unary callers")
    p.add_argument(
        "--concurrent-calls", type=int, default=5000, help="unary calls in total, concurrent"
    )
    p.add_argument("--stream-msgs", type=int, default=50_000, help="messages of the single stream")
    p.add_argument("--streams", type=int, default=100, help="concurrent streams")
    p.add_argument(
        "--msgs-per-stream", type=int, default=500, help="messages per concurrent stream"
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    rounds = [asyncio.run(one_round(args)) for _ in range(max(1, args.repeat))]
    result = {
        "label": args.label,
        "grpcio": grpc.__version__,
        "protobuf": protobuf_version,
        "protobuf_impl": api_implementation.Type(),
        "python": platform.python_version(),
        "repeat": len(rounds),
        "payload_bytes": args.payload,
        "units": "calls/s (unary_*), msgs/s (stream_*); cpu_us_per_op: process CPU us per call/msg",
        "metrics": summarize(rounds),
        "wall_s": round(time.perf_counter() - started, 2),
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
