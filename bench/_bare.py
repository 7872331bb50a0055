"""The bare grpc.aio baseline: an echo service with no project logic, over our own ``Event`` type.

Served in its own process (``python -m bench._bare``; prints ``PORT n``), exactly like the Runtime
server is, so the client side of both measurements runs in the bench process on the same loop.

* ``Unary``: echoes an ``Event`` (a TextDelta event: seq, worker_id, run_id, time, a word);
* ``Stream``: the request's ``seq`` says how many events to stream back; each one is built fresh
  (seq, ids, a Timestamp, a TextDelta with a short word), as the Runtime builds one per delta.

The handlers are registered with ``grpc.method_handlers_generic_handler`` and (de)serialise real
``types_pb2.Event`` messages, so the protobuf cost per message is the Runtime's.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import grpc.aio
from google.protobuf.timestamp_pb2 import Timestamp

from bench._common import run_on_serve_loop
from runtime_client.api import types_pb2 as pb

SERVICE = "bench.Echo"
UNARY = f"/{SERVICE}/Unary"
STREAM = f"/{SERVICE}/Stream"
WORKER_ID = "0197a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"
RUN_ID = "0197a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5c"
WORD = " tok"


def sample_event(seq: int = 1) -> pb.Event:
    t = time.time()
    seconds = int(t)
    return pb.Event(
        seq=seq,
        worker_id=WORKER_ID,
        run_id=RUN_ID,
        time=Timestamp(seconds=seconds, nanos=int((t - seconds) * 1e9)),
        text_delta=pb.TextDelta(text=WORD),
    )


async def _unary(request: pb.Event, context: Any) -> pb.Event:
    return request


async def _stream(request: pb.Event, context: Any) -> AsyncIterator[pb.Event]:
    for seq in range(1, request.seq + 1):
        yield sample_event(seq)


def add_echo(server: grpc.aio.Server) -> None:
    handler = grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(
                _unary,
                request_deserializer=pb.Event.FromString,
                response_serializer=pb.Event.SerializeToString,
            ),
            "Stream": grpc.unary_stream_rpc_method_handler(
                _stream,
                request_deserializer=pb.Event.FromString,
                response_serializer=pb.Event.SerializeToString,
            ),
        },
    )
    server.add_generic_rpc_handlers((handler,))


async def serve(add: Callable[[grpc.aio.Server], None] = add_echo) -> None:
    """Serve what ``add`` registers on 127.0.0.1 (a free port, printed as ``PORT n``) until
    SIGTERM/SIGINT: the bare baselines' servers (this one, ``bench.shape``) run alike."""
    server = grpc.aio.server()
    add(server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"PORT {port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await server.stop(0)


class BareClient:
    """The client side of the baseline (one channel)."""

    def __init__(self, target: str) -> None:
        self.channel = grpc.aio.insecure_channel(target)
        self._unary = self.channel.unary_unary(
            UNARY,
            request_serializer=pb.Event.SerializeToString,
            response_deserializer=pb.Event.FromString,
        )
        self._stream = self.channel.unary_stream(
            STREAM,
            request_serializer=pb.Event.SerializeToString,
            response_deserializer=pb.Event.FromString,
        )

    async def close(self) -> None:
        await self.channel.close()

    async def unary_calls(self, n: int) -> int:
        """``n`` sequential echo calls; returns ``n``."""
        request = sample_event()
        for _ in range(n):
            reply = await self._unary(request)
            if reply.seq != request.seq:
                raise RuntimeError("bad echo")
        return n

    async def read_stream(self, n: int) -> int:
        """One server stream of ``n`` events; returns the number of TextDelta events read."""
        got = 0
        call = self._stream(pb.Event(seq=n))
        eof = grpc.aio.EOF
        while True:
            msg = await call.read()
            if msg is eof:
                break
            got += msg.HasField("text_delta")
        if got != n:
            raise RuntimeError(f"stream returned {got} of {n} events")
        return got

    async def many_streams(self, streams: int, per_stream: int) -> int:
        counts = await asyncio.gather(*(self.read_stream(per_stream) for _ in range(streams)))
        return sum(counts)


if __name__ == "__main__":
    run_on_serve_loop(serve())
