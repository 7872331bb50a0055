"""grpc's per-connection bounds, from the Runtime's limits: used by the main server and by the
plaintext health port alike (that one needs no token, so its connections must be bounded too)."""

from __future__ import annotations

from runtime_server.model import Limits

__all__ = ["connection_options"]


def connection_options(limits: Limits) -> list[tuple[str, int]]:
    """grpc's per-connection bounds from ``limits`` (each 0 = off, grpc's own default).

    Decisions (each default is reported by GetRuntime):

    - ``max_connection_idle_seconds`` 300: a connection with no call in flight costs a socket and
      HTTP/2 state; without a bound a client could open them until the process runs out of file
      descriptors. Closing one is a GOAWAY: a client's channel reconnects on its next call.
    - ``max_connection_age_seconds`` off: event subscriptions are meant to last; cutting every
      connection at an age would cut them all (they resume, but every merged view and console
      stream would notice). An operator facing untrusted clients can set it (with
      ``max_connection_age_grace_seconds`` for calls in flight to finish): it also ends calls a
      client opened and never reads. Subscriptions that are never read are cut anyway, as
      SUBSCRIBER_LAGGING, once ``subscriber_buffer_events`` events wait for them.
    - ``min_client_ping_interval_seconds`` 10: what clients may ping at while no data flows; a
      client pinging faster is sent GOAWAY ENHANCE_YOUR_CALM after grpc's 2 strikes. The
      registry's channels ping every 30 s.
    - ``max_concurrent_streams`` 1000: HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS, so one
      connection cannot hold unbounded calls (more wait in the client's queue, not fail).
      A Backend multiplexes its console streams over one connection per runtime, so this is far
      above its ``max_streams``.
    """

    def ms(seconds: float) -> int:
        return max(1, round(seconds * 1000))

    options: list[tuple[str, int]] = []
    if limits.max_connection_idle_seconds > 0:
        options.append(("grpc.max_connection_idle_ms", ms(limits.max_connection_idle_seconds)))
    if limits.max_connection_age_seconds > 0:
        options.append(("grpc.max_connection_age_ms", ms(limits.max_connection_age_seconds)))
        grace = limits.max_connection_age_grace_seconds
        options.append(("grpc.max_connection_age_grace_ms", ms(grace) if grace > 0 else 0))
    if limits.min_client_ping_interval_seconds > 0:
        options.append(
            (
                "grpc.http2.min_ping_interval_without_data_ms",
                ms(limits.min_client_ping_interval_seconds),
            )
        )
    else:  # any ping rate is accepted
        options.append(("grpc.http2.max_ping_strikes", 0))
    if limits.max_concurrent_streams > 0:
        options.append(("grpc.max_concurrent_streams", limits.max_concurrent_streams))
    return options
