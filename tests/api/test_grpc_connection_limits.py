"""gRPC connections are bounded: idle ones, old ones, ones that ping too often, and the calls one
connection may hold at once. Each bound is a limit GetRuntime reports.

Before, an HTTP/2 connection that never made a call stayed open for as long as its client
answered keepalive pings (forever: any HTTP/2 stack answers them), a connection's calls were
unbounded, and a call a client opened and never read stayed open for good.

The idle and ping tests speak raw HTTP/2 over a plain socket (what a hostile client does: no grpc
library smoothing anything over); the others use a real grpc channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections.abc import Callable

import grpc
import pytest
from serving import BASE_CONFIG, ServeFactory, eventually

from runtime_client.api import management_service_pb2 as mgmt_pb
from runtime_client.api import management_service_pb2_grpc as mgmt_grpc
from runtime_client.api import observation_service_pb2 as obs_pb
from runtime_client.api import observation_service_pb2_grpc as obs_grpc
from runtime_server import Runtime
from runtime_server.grpc import OpsOptions, start_server
from runtime_server.model import Limits
from runtime_server.runtime import parse_config

BOUND = 20.0  # seconds: a safety net only
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
SETTINGS, PING, GOAWAY = 0x4, 0x6, 0x7
ACK = 0x1
ENHANCE_YOUR_CALM = 0xB


def _frame(kind: int, flags: int, payload: bytes = b"", stream: int = 0) -> bytes:
    return (
        struct.pack(">I", len(payload))[1:]
        + bytes([kind, flags])
        + struct.pack(">I", stream)
        + payload
    )


class RawH2:
    """A bare HTTP/2 client connection: frames in, frames out, nothing answered on its own."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, target: str) -> RawH2:
        host, _, port = target.rpartition(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(PREFACE + _frame(SETTINGS, 0))
        await writer.drain()
        return cls(reader, writer)

    async def send(self, frame: bytes) -> None:
        self.writer.write(frame)
        await self.writer.drain()

    async def next_frame(self) -> tuple[int, int, bytes] | None:
        """(type, flags, payload), or None once the server closed the connection."""
        try:
            head = await self.reader.readexactly(9)
            size = int.from_bytes(head[:3], "big")
            payload = await self.reader.readexactly(size)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        return head[3], head[4], payload

    async def goaway(self, within: float = BOUND) -> tuple[int, bytes] | None:
        """The error code and debug text of the server's GOAWAY, waiting at most ``within``
        seconds (None: the connection closed without one). Pings and settings are answered, as
        a live client would."""
        deadline = time.monotonic() + within
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no GOAWAY within {within} s")
            try:
                frame = await asyncio.wait_for(self.next_frame(), left)
            except TimeoutError:
                raise AssertionError(f"no GOAWAY within {within} s") from None
            if frame is None:
                return None
            kind, flags, payload = frame
            if kind == GOAWAY:
                return int.from_bytes(payload[4:8], "big"), payload[8:]
            with contextlib.suppress(ConnectionError):  # the server may have closed already
                if kind == PING and not flags & ACK:
                    await self.send(_frame(PING, ACK, payload))
                if kind == SETTINGS and not flags & ACK:
                    await self.send(_frame(SETTINGS, ACK))

    async def until(self, wanted: Callable[[int, int], bool]) -> tuple[int, int, bytes] | None:
        """The next frame ``wanted(type, flags)`` accepts (others are skipped; the server's
        settings are acknowledged), or None once the connection is closed."""
        while True:
            frame = await asyncio.wait_for(self.next_frame(), BOUND)
            if frame is None or wanted(frame[0], frame[1]):
                return frame
            if frame[0] == SETTINGS and not frame[1] & ACK:
                await self.send(_frame(SETTINGS, ACK))

    def close(self) -> None:
        self.writer.close()


async def test_limits_are_reported_with_their_defaults(serve: ServeFactory) -> None:
    served = await serve()
    limits = (await served.client.get_runtime()).limits
    assert limits.max_connection_idle_seconds == 300.0
    assert limits.max_connection_age_seconds == 0.0  # off by default: subscriptions last
    assert limits.max_connection_age_grace_seconds == 300.0
    assert limits.min_client_ping_interval_seconds == 10.0
    assert limits.max_concurrent_streams == 1000


async def test_an_idle_connection_is_closed(serve: ServeFactory) -> None:
    served = await serve(limits=Limits(max_connection_idle_seconds=0.3))
    assert (await served.client.get_runtime()).limits.max_connection_idle_seconds == 0.3
    conn = await RawH2.open(served.target)
    try:
        # a connection that never makes a call: GOAWAY, long before any keepalive
        goaway = await conn.goaway()
        assert goaway is not None
        assert b"idle" in goaway[1]
        assert await asyncio.wait_for(_closed(conn), BOUND)
    finally:
        conn.close()


async def test_a_connection_in_use_is_not_idle(serve: ServeFactory) -> None:
    # a subscription keeps its connection: idleness counts connections with no call in flight
    served = await serve(
        limits=Limits(max_connection_idle_seconds=0.2, heartbeat_interval_seconds=0.05)
    )
    stream = served.client.subscribe(include_heartbeats=True)
    started = time.monotonic()
    while time.monotonic() - started < 1.5:  # several idle periods
        await asyncio.wait_for(anext(stream), BOUND)
    await stream.aclose()


async def test_a_client_pinging_too_often_is_sent_goaway(serve: ServeFactory) -> None:
    served = await serve()  # the default: at most one ping per 10 s without data
    conn = await RawH2.open(served.target)
    try:
        # one ping at a time, the next once the last is answered: nothing is sent after the
        # server's GOAWAY (which would reset the connection and lose that frame)
        for i in range(20):
            await conn.send(_frame(PING, 0, struct.pack(">Q", i)))
            frame = await conn.until(
                lambda kind, flags: kind == GOAWAY or (kind, flags) == (PING, ACK)
            )
            assert frame is not None, "closed without a GOAWAY"
            if frame[0] == GOAWAY:
                assert int.from_bytes(frame[2][4:8], "big") == ENHANCE_YOUR_CALM
                return
        raise AssertionError("20 pings in a row were all accepted")
    finally:
        conn.close()


async def test_ping_enforcement_can_be_turned_off(serve: ServeFactory) -> None:
    served = await serve(limits=Limits(min_client_ping_interval_seconds=0))
    conn = await RawH2.open(served.target)
    try:
        for i in range(5):
            await conn.send(_frame(PING, 0, struct.pack(">Q", i)))
        acks = 0
        while acks < 5:  # every ping is answered, none is a strike
            frame = await asyncio.wait_for(conn.next_frame(), BOUND)
            assert frame is not None, "the server closed the connection"
            kind, flags, _ = frame
            assert kind != GOAWAY
            acks += kind == PING and bool(flags & ACK)
    finally:
        conn.close()


async def test_an_old_connection_ends_its_calls_after_the_grace(serve: ServeFactory) -> None:
    # a call that never ends (a subscription its client stopped reading after the first
    # message) is ended on the server once the connection is older than the age plus the grace
    served = await serve(
        limits=Limits(
            max_connection_age_seconds=0.3,
            max_connection_age_grace_seconds=0.3,
            heartbeat_interval_seconds=0.05,
        )
    )
    async with grpc.aio.insecure_channel(served.target) as channel:
        call = obs_grpc.ObservationServiceStub(channel).SubscribeEvents(
            obs_pb.SubscribeEventsRequest(from_now=True)
        )
        await asyncio.wait_for(call.read(), BOUND)  # open on the server
        assert served.runtime.info().subscribers == 1
        # without the bound the server holds it forever (heartbeats are never a lag)
        await eventually(lambda: served.runtime.info().subscribers == 0, within=BOUND)
        with pytest.raises(grpc.aio.AioRpcError) as ended:
            await _drain(call)  # what the client still had buffered, then the end
        assert ended.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_one_connection_runs_at_most_max_concurrent_streams_calls(
    serve: ServeFactory,
) -> None:
    served = await serve(limits=Limits(max_concurrent_streams=2, heartbeat_interval_seconds=0.05))
    # counted on the runtime itself: served.client may share this channel's connection
    async with grpc.aio.insecure_channel(served.target) as channel:
        # one call first: the server's SETTINGS (with the bound) have arrived before the streams
        await mgmt_grpc.ManagementServiceStub(channel).GetRuntime(mgmt_pb.GetRuntimeRequest())
        stub = obs_grpc.ObservationServiceStub(channel)
        calls = [
            stub.SubscribeEvents(obs_pb.SubscribeEventsRequest(from_now=True)) for _ in range(3)
        ]
        first, second, third = (asyncio.ensure_future(c.read()) for c in calls)
        await asyncio.wait_for(asyncio.gather(first, second), BOUND)
        await eventually(lambda: served.runtime.info().subscribers == 2)
        # the first two keep streaming while the third waits in the client for a free stream
        for _ in range(5):
            await asyncio.wait_for(calls[0].read(), BOUND)
        assert not third.done()
        assert served.runtime.info().subscribers == 2  # without the bound: 3
        calls[0].cancel()  # frees a stream on that connection: the third starts
        await asyncio.wait_for(third, BOUND)
        assert served.runtime.info().subscribers == 2
        for c in calls[1:]:
            c.cancel()


async def _drain(call: grpc.aio.UnaryStreamCall) -> None:
    while True:
        await asyncio.wait_for(call.read(), BOUND)


async def _closed(conn: RawH2) -> bool:
    while await conn.next_frame() is not None:
        pass
    return True


@pytest.mark.parametrize("bad", [-1, "x"])
def test_config_refuses_bad_values(bad: object) -> None:
    from runtime_server.runtime import limits_from

    with pytest.raises(ValueError, match="max_concurrent_streams"):
        limits_from({"max_concurrent_streams": bad})


async def test_the_plaintext_health_port_bounds_idle_connections_too() -> None:
    # the health port needs no token: its connections must be bounded like the main port's
    runtime = Runtime(
        config=parse_config(BASE_CONFIG), limits=Limits(max_connection_idle_seconds=0.3)
    )
    server = await start_server(runtime, ops=OpsOptions(health_listen="127.0.0.1:0"))
    try:
        conn = await RawH2.open(f"127.0.0.1:{server.health_port}")
        try:
            goaway = await conn.goaway()
            assert goaway is not None
            assert b"idle" in goaway[1]
        finally:
            conn.close()
    finally:
        await server.stop(0)
