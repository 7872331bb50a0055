"""The Backend's HTTP/1.1 server protocol: uvicorn's h11 protocol with the bounds it lacks.

uvicorn (with h11, the only HTTP parser installed here) arms its one timer, the keep-alive
timeout, only after a response. So, before this module:

- a connection that never sent a byte stayed open forever;
- a *slowloris* client sending its request headers one byte a second stayed open forever (every
  byte cancels the keep-alive timer and nothing re-arms it), and so did one trickling a body;
- connections were unbounded: ``limit_concurrency`` only answers 503 to *requests* past it, after
  accepting and parsing them, so idle or slow connections were never counted against anything;
- a client that stopped reading while the server had data for it (an event stream) held its
  socket, task and stream slot for good.

:func:`bounded_protocol` returns the protocol class with three bounds (``HttpLimits``):

- ``request_timeout_s``: from the moment the server waits for a request (a new connection, or
  the end of the previous response) until that request's headers *and* body are in. Past it the
  client gets ``408`` (if no response began) and the connection is closed. Trickling bytes does
  not extend it: it is a deadline, not an idle timer. While the application handles a request
  (an event stream for hours) no deadline runs.
- ``max_connections``: open connections at once. One more is answered ``503`` and closed at once,
  before anything is read from it. Event streams count, so it must exceed ``max_streams``.
- ``max_connections_per_client``: open connections from one peer address, answered the same way
  past it: before, one client could hold every connection and starve everyone else. A trusted
  proxy (``trusted_proxies``: the Backend's explicit list, none by default — the same list
  uvicorn believes X-Forwarded-For from) is not counted per address: its connections carry many
  clients, and a connection's real client is only known per request, from the proxy's header,
  after the connection is accepted. So a trusted proxy is bounded by ``max_connections`` alone.
  Nothing is trusted by default: uvicorn's own default (127.0.0.1, or ``$FORWARDED_ALLOW_IPS``)
  let any local process forge X-Forwarded-For and count as any number of clients. People behind
  one NAT share their address's count, hence a generous default (a quarter of
  ``max_connections``).
- ``send_timeout_s``: how long the server's writes may stay blocked (the transport's buffer full
  because the client reads nothing). Past it the connection is aborted; the application sees a
  disconnect.

Also: uvicorn logs a WARNING line for every request it cannot parse ("Invalid HTTP request
received."), so anyone who can connect could flood the Backend's log; such lines are kept to one
per :data:`QUIET_WINDOW_S`, counting the ones left out (:class:`_QuietLog`).

These are connection-level facts the ASGI application cannot see, hence a protocol subclass and
not a middleware. It relies on uvicorn's h11 protocol's hooks (``connection_made``,
``handle_events``, ``on_response_complete``, ``pause_writing``/``resume_writing``), pinned by the
``uvicorn`` range in pyproject.toml; tests/backend/test_http_limits.py drives each bound over real
sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from dataclasses import dataclass
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

__all__ = ["HttpLimits", "bounded_protocol"]

_REFUSED = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 25\r\nconnection: close\r\n\r\ntoo many open connections"
)
_REFUSED_CLIENT = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 43\r\nconnection: close\r\n\r\ntoo many open connections from your address"
)
_LINGER_S = 1.0  # how long a refused connection's bytes are read and dropped
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 35\r\nconnection: close\r\n\r\nthe request took too long to arrive"
)


QUIET_WINDOW_S = 60.0
_NOISY = frozenset({"Invalid HTTP request received.", "Unsupported upgrade request."})


class _QuietLog:
    """uvicorn's per-connection logger, with its lines about unparsable requests (which anyone
    can cause) kept to one per window, the next one counting those left out."""

    def __init__(self, logger: logging.Logger, window_s: float = QUIET_WINDOW_S) -> None:
        self._logger = logger
        self._window = window_s
        self._next = 0.0
        self._left_out = 0

    def warning(self, msg: str, *args: Any, **kwargs: Any) -> None:
        if msg not in _NOISY:
            self._logger.warning(msg, *args, **kwargs)
            return
        now = time.monotonic()
        if now < self._next:
            self._left_out += 1
            return
        self._next = now + self._window
        left_out, self._left_out = self._left_out, 0
        more = f" ({left_out} more such requests since the last line)" if left_out else ""
        self._logger.warning("%s%s; at most one such line per %.0f s", msg, more, self._window)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class _Trust:
    """Whether a peer address is one of the trusted proxies (addresses, networks, ``*``).
    Entries that are neither (a Unix socket's name) never match an IP peer."""

    def __init__(self, spec: list[str] | str) -> None:
        entries = [e.strip() for e in (spec.split(",") if isinstance(spec, str) else spec)]
        self.everyone = "*" in entries
        self.networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        for entry in entries:
            with contextlib.suppress(ValueError):
                self.networks.append(ipaddress.ip_network(entry, strict=False))

    def __contains__(self, address: str) -> bool:
        if self.everyone:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%")[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # a dual-stack socket's IPv4 peer
        return any(ip in net for net in self.networks)


@dataclass(frozen=True, slots=True)
class HttpLimits:
    max_connections: int = 256
    max_connections_per_client: int = 64  # per peer address; trusted proxies: not counted
    request_timeout_s: float = 30.0
    send_timeout_s: float = 60.0
    trusted_proxies: tuple[str, ...] = ()  # addresses/networks; none by default


def bounded_protocol(limits: HttpLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol class bounded by ``limits`` (pass it as ``uvicorn.Config(http=)``)."""

    quiet = _QuietLog(logging.getLogger("uvicorn.error"))
    per_address: dict[str, int] = {}  # open connections by peer address (none kept at 0)
    trusted = _Trust(list(limits.trusted_proxies))  # the proxies whose headers are believed

    class BoundedH11Protocol(H11Protocol):
        _read_deadline: asyncio.TimerHandle | None = None
        _send_deadline: asyncio.TimerHandle | None = None
        _refused = False

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.logger = quiet  # type: ignore[assignment]

        _address: str | None = None  # counted in per_address

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            if len(self.connections) >= limits.max_connections:
                self._refuse(transport, _REFUSED)
                return
            address = self._peer_address(transport)
            if address is not None:
                if per_address.get(address, 0) >= limits.max_connections_per_client:
                    self._refuse(transport, _REFUSED_CLIENT)
                    return
                per_address[address] = per_address.get(address, 0) + 1
                self._address = address
            super().connection_made(transport)
            self._watch_request()

        def _refuse(self, transport: asyncio.Transport, answer: bytes) -> None:
            # not counted, nothing parsed: answered, then closed. Not closed at once: the
            # request the client is sending would reach a closed socket, and the kernel's
            # reset would destroy the answer before the client reads it. So its bytes are
            # read and dropped for a moment after the answer (its half-close) is sent.
            self._refused = True
            self.transport = transport
            transport.write(answer)
            if transport.can_write_eof():
                transport.write_eof()
            self._read_deadline = self.loop.call_later(_LINGER_S, transport.close)

        def _peer_address(self, transport: asyncio.Transport) -> str | None:
            """The peer's address when its connections are counted per address; None for a
            trusted proxy (or a socket with no address, e.g. a Unix socket)."""
            peer = transport.get_extra_info("peername")
            if not isinstance(peer, tuple) or not peer:
                return None
            address = str(peer[0])
            return None if address in trusted else address

        def connection_lost(self, exc: Exception | None) -> None:
            self._cancel_read_deadline()
            self._cancel_send_deadline()
            if self._refused:
                return
            if self._address is not None:
                left = per_address[self._address] - 1
                if left:
                    per_address[self._address] = left
                else:
                    del per_address[self._address]
                self._address = None
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._refused:
                return
            super().data_received(data)

        def handle_events(self) -> None:
            super().handle_events()
            self._watch_request()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._watch_request()

        def _watch_request(self) -> None:
            """Arm the request deadline while the server waits for (more of) a request; drop it
            once the request is complete (the application has it) or the connection closes."""
            waiting = self.conn.their_state in (h11.IDLE, h11.SEND_BODY)
            if waiting and not self.transport.is_closing():
                if self._read_deadline is None:
                    self._read_deadline = self.loop.call_later(
                        limits.request_timeout_s, self._request_timed_out
                    )
            else:
                self._cancel_read_deadline()

        def _request_timed_out(self) -> None:
            self._read_deadline = None
            if self.transport.is_closing():
                return
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                self.transport.write(_TIMED_OUT)  # no response began: say why
            # an application reading the body sees a disconnect
            self.transport.close()

        def _cancel_read_deadline(self) -> None:
            if self._read_deadline is not None:
                self._read_deadline.cancel()
                self._read_deadline = None

        def shutdown(self) -> None:
            """Called by uvicorn for every connection when the server stops. A response that has
            started and not ended is an event stream (others end within moments): uvicorn
            would wait for it forever, so SIGTERM never stopped a Backend that had a console
            open. It is cut now; the browser's EventSource reconnects to whoever serves next."""
            cycle = self.cycle
            if cycle is not None and cycle.response_started and not cycle.response_complete:
                self.transport.close()
                return
            super().shutdown()

        def pause_writing(self) -> None:
            super().pause_writing()
            if self._send_deadline is None:
                self._send_deadline = self.loop.call_later(
                    limits.send_timeout_s, self._send_timed_out
                )

        def resume_writing(self) -> None:
            super().resume_writing()
            self._cancel_send_deadline()

        def _send_timed_out(self) -> None:
            self._send_deadline = None
            self.transport.abort()  # close() would wait for the buffer it cannot send

        def _cancel_send_deadline(self) -> None:
            if self._send_deadline is not None:
                self._send_deadline.cancel()
                self._send_deadline = None

    return BoundedH11Protocol
