"""The shape baseline: a bare grpc.aio server that does the product's exact RPC shape per run,
with no logic of its own — the limit gRPC's shape sets for ANY implementation of this API.

A product run is one unary ``SendInput`` call, then the run's events pushed on a subscription
the client opened once (one per concurrent client). The bare baseline (``bench._bare``) is one
server-streaming call of 11 messages per run: a different shape. This server reproduces the
product's shape and spends nothing else:

* ``/bench.Shape/SendInput`` (unary): takes a ``SendInputRequest``'s bytes, answers the bytes of
  the ``SendInputResponse`` a real run answered, and puts the run's messages on the queue of the
  subscription whose worker id the request names (field 1, read from the bytes: no protobuf);
* ``/bench.Shape/SubscribeEvents`` (server stream, opened once): the per-event shape, one message
  per event (18 for a 10-word echo run), each the bytes the real ``SubscribeEvents`` sent;
* ``/bench.Shape/SubscribeEventBatchesK`` (K = 1..4): the batched shape, the same events' bytes
  framed as ``EventBatch`` messages, split into K messages per run (``SubscribeEventBatches``
  sends ~1-2 a run; 1 is the fewest any implementation can send).

Every byte comes from a real run (:func:`capture`, against a served runtime); the server sends
those pre-encoded bytes as they are (no serializer), so its only costs are gRPC's and the
asyncio queue hand-off from the unary handler to the stream. Run it in its own process like the
Runtime (``python -m bench.shape --spec FILE``; prints ``PORT n``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import grpc.aio

from bench._bare import serve
from bench._common import run_on_serve_loop
from runtime_client.api import catalog_service_pb2 as catalog_pb
from runtime_client.api import interaction_service_pb2 as interaction_pb
from runtime_client.api import observation_service_pb2 as observation_pb
from runtime_client.api import types_pb2 as pb

SERVICE = "bench.Shape"
SEND = f"/{SERVICE}/SendInput"
EVENTS = f"/{SERVICE}/SubscribeEvents"
MAX_BATCHES = 4
_RT = "/worker_runtime.v1"


def batches_path(k: int) -> str:
    return f"/{SERVICE}/SubscribeEventBatches{k}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


@dataclass(frozen=True)
class Shape:
    """One real run's wire bytes: ``request`` (SendInputRequest as the client sends it),
    ``reply`` (SendInputResponse as the server answered), ``events`` (each event as
    SubscribeEvents sent it)."""

    request: bytes
    reply: bytes
    events: tuple[bytes, ...]

    def batches(self, k: int) -> list[bytes]:
        """The events as ``k`` EventBatch messages (field 1, length-delimited, in order), split
        as evenly as possible."""
        k = max(1, min(k, len(self.events)))
        size, extra = divmod(len(self.events), k)
        out, i = [], 0
        for part in range(k):
            n = size + (1 if part < extra else 0)
            out.append(b"".join(b"\x0a" + _varint(len(e)) + e for e in self.events[i : i + n]))
            i += n
        return out

    def messages(self, per_event: bool, k: int = 1) -> list[bytes]:
        return list(self.events) if per_event else self.batches(k)

    def request_for(self, worker_id: str) -> bytes:
        """``request`` with its worker id (field 1) replaced by ``worker_id`` (same length)."""
        n = self.request[1]
        wid = worker_id.encode()
        if self.request[0] != 0x0A or len(wid) != n:
            raise ValueError("the request's first field must be a worker id of the same length")
        return self.request[:2] + wid + self.request[2 + n :]

    def dump(self, path: Path) -> None:
        enc: Callable[[bytes], str] = lambda b: base64.b64encode(b).decode()  # noqa: E731
        data = {"request": enc(self.request), "reply": enc(self.reply),
                "events": [enc(e) for e in self.events]}  # fmt: skip
        path.write_text(json.dumps(data))

    @classmethod
    def load(cls, path: Path) -> Shape:
        data = json.loads(path.read_text())
        dec = base64.b64decode
        return cls(dec(data["request"]), dec(data["reply"]), tuple(dec(e) for e in data["events"]))


def _worker_key(request: bytes) -> bytes:
    """Field 1 (the worker id) of a SendInputRequest / SubscribeEventsRequest, from the bytes."""
    return request[2 : 2 + request[1]]


def add_shape(server: grpc.aio.Server, shape: Shape) -> None:
    """Registers the shape service. A send puts a token on its worker's queue; that worker's
    stream, for each token, sends its run's messages (per-event or K batches, by the method the
    client opened)."""
    queues: dict[bytes, asyncio.Queue[None]] = {}
    reply = shape.reply

    def queue(key: bytes) -> asyncio.Queue[None]:
        q = queues.get(key)
        if q is None:  # whichever of the stream and the first send comes first creates it
            q = queues[key] = asyncio.Queue()
        return q

    async def send(request: bytes, context: Any) -> bytes:
        queue(_worker_key(request)).put_nowait(None)
        return reply

    def subscribe(messages: list[bytes]) -> Any:
        async def stream(request: bytes, context: Any) -> AsyncIterator[bytes]:
            key = _worker_key(request)
            get = queue(key).get
            try:
                while True:
                    await get()
                    for message in messages:
                        yield message
            finally:
                queues.pop(key, None)

        return grpc.unary_stream_rpc_method_handler(stream)

    methods = {"SendInput": grpc.unary_unary_rpc_method_handler(send),
               "SubscribeEvents": subscribe(shape.messages(per_event=True))}  # fmt: skip
    for k in range(1, MAX_BATCHES + 1):
        methods[f"SubscribeEventBatches{k}"] = subscribe(shape.batches(k))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, methods),))


class ShapeRuns:
    """The client side: ``concurrency`` subscriptions opened once; ``__call__(n)``: n runs spread
    over them, each a SendInput call then its messages read. Decodes what it reads with
    protobuf, as the bare client and the product's client do; ``raw`` keeps the bytes: every
    message each subscription received, in order, in ``received`` (for the test)."""

    def __init__(self, target: str, shape: Shape, concurrency: int, per_event: bool,
                 batches: int = 1, raw: bool = False) -> None:  # fmt: skip
        self.channel = grpc.aio.insecure_channel(target)
        self.concurrency = concurrency
        self.per_run = len(shape.messages(per_event, batches))
        self.raw = raw
        self.received: list[list[bytes]] = []
        self.replies: list[bytes] = []
        self._send = self.channel.unary_unary(
            SEND, response_deserializer=None if raw else interaction_pb.SendInputResponse.FromString
        )
        event_type = pb.Event if per_event else observation_pb.EventBatch
        self._subscribe = self.channel.unary_stream(
            EVENTS if per_event else batches_path(batches),
            response_deserializer=None if raw else event_type.FromString,
        )
        self.shape = shape
        self.loops: list[tuple[bytes, Any]] = []

    async def open(self) -> None:
        for _ in range(self.concurrency):
            wid = str(uuid.uuid4())
            sub = observation_pb.SubscribeEventsRequest(worker_id=wid).SerializeToString()
            self.loops.append((self.shape.request_for(wid), self._subscribe(sub)))

    async def close(self) -> None:
        for _, call in self.loops:
            call.cancel()
        await self.channel.close()

    async def __call__(self, n: int) -> int:
        per = max(1, n // self.concurrency)
        send, per_run, raw = self._send, self.per_run, self.raw

        async def one(index: int, request: bytes, call: Any) -> int:
            read = call.read
            for _ in range(per):
                reply = await send(request)
                for _ in range(per_run):
                    msg = await read()
                    if raw:
                        self.received[index].append(msg)
                if raw:
                    self.replies.append(reply)
            return per

        while len(self.received) < len(self.loops):
            self.received.append([])
        runs = (one(i, req, call) for i, (req, call) in enumerate(self.loops))
        return sum(await asyncio.gather(*runs))


async def capture(target: str, text: str) -> Shape:
    """One real run's bytes from a served runtime (echo profile, ``text`` as input, a worker with
    one run of history, as in the bench): the request as the client builds it, the reply, and
    the run's events as the per-event ``SubscribeEvents`` sent them (up to its RunFinished)."""
    async with grpc.aio.insecure_channel(target) as channel:
        create = channel.unary_unary(
            f"{_RT}.CatalogService/CreateWorker",
            request_serializer=catalog_pb.CreateWorkerRequest.SerializeToString,
            response_deserializer=catalog_pb.CreateWorkerResponse.FromString,
        )
        send = channel.unary_unary(f"{_RT}.InteractionService/SendInput")
        subscribe = channel.unary_stream(
            f"{_RT}.ObservationService/SubscribeEvents",
            request_serializer=observation_pb.SubscribeEventsRequest.SerializeToString,
        )
        created = await create(catalog_pb.CreateWorkerRequest(profile="echo"))
        wid = created.worker.worker_id
        call = subscribe(
            observation_pb.SubscribeEventsRequest(worker_id=wid, after_seq=created.seq)
        )
        request = interaction_pb.SendInputRequest(
            worker_id=wid,
            text=text,
            busy_policy=pb.BUSY_POLICY_REJECT,  # as the client sends it
        ).SerializeToString()
        try:
            for _ in range(2):  # the second run: the worker has history, as in the bench's loops
                reply = await send(request)
                run_id = interaction_pb.SendInputResponse.FromString(reply).run.run_id
                events: list[bytes] = []
                while True:
                    raw = await call.read()
                    if raw is grpc.aio.EOF:
                        raise RuntimeError("the subscription ended before the run finished")
                    event = pb.Event.FromString(raw)
                    if not event.seq:
                        continue  # a heartbeat is not part of the run
                    events.append(raw)
                    if event.HasField("run_finished") and event.run_finished.run.run_id == run_id:
                        break
        finally:
            call.cancel()
    return Shape(request, reply, tuple(events))


async def count_batches(target: str, concurrency: int, runs: int, text: str) -> float:
    """Messages per run the product's ``SubscribeEventBatches`` sends: ``concurrency`` workers,
    each with a raw subscription, ``runs`` runs in all; each run's batches counted up to the one
    carrying its RunFinished."""
    async with grpc.aio.insecure_channel(target) as channel:
        create = channel.unary_unary(
            f"{_RT}.CatalogService/CreateWorker",
            request_serializer=catalog_pb.CreateWorkerRequest.SerializeToString,
            response_deserializer=catalog_pb.CreateWorkerResponse.FromString,
        )
        send = channel.unary_unary(
            f"{_RT}.InteractionService/SendInput",
            request_serializer=interaction_pb.SendInputRequest.SerializeToString,
            response_deserializer=interaction_pb.SendInputResponse.FromString,
        )
        subscribe = channel.unary_stream(
            f"{_RT}.ObservationService/SubscribeEventBatches",
            request_serializer=observation_pb.SubscribeEventsRequest.SerializeToString,
            response_deserializer=observation_pb.EventBatch.FromString,
        )
        per = max(1, runs // concurrency)

        async def one() -> int:
            created = await create(catalog_pb.CreateWorkerRequest(profile="echo"))
            wid = created.worker.worker_id
            call = subscribe(
                observation_pb.SubscribeEventsRequest(worker_id=wid, after_seq=created.seq)
            )
            request = interaction_pb.SendInputRequest(
                worker_id=wid, text=text, busy_policy=pb.BUSY_POLICY_REJECT
            )
            messages = 0
            try:
                for _ in range(per):
                    run_id = (await send(request)).run.run_id
                    done = False
                    while not done:
                        batch = await call.read()
                        if batch is grpc.aio.EOF:
                            raise RuntimeError("the subscription ended before the run finished")
                        if any(e.seq for e in batch.events):
                            messages += 1
                        done = any(
                            e.HasField("run_finished") and e.run_finished.run.run_id == run_id
                            for e in batch.events
                        )
            finally:
                call.cancel()
            return messages

        total = sum(await asyncio.gather(*(one() for _ in range(concurrency))))
        return total / (per * concurrency)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.shape")
    parser.add_argument("--spec", type=Path, required=True, help="a Shape dumped as JSON")
    shape = Shape.load(parser.parse_args().spec)
    run_on_serve_loop(serve(lambda server: add_shape(server, shape)))
