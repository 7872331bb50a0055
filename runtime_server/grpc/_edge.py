"""The edge's router: the server's one generic handler, and what the generated
``add_*_to_server`` functions register into.

grpc.aio asks a server's generic handlers for a call's method handler, then hands the call to it.
Every method is registered here (``add_registered_method_handlers``, which each generated
``add_*_to_server`` calls) and rewritten *once*, at registration, into its *route*:

- the handler grpc runs: the method's behaviour in one wrapper — the observing wrapper
  (:mod:`._observe`: decode guard, log context, metrics, access line) when metrics or the access
  log are on, else the decode guard's alone (:mod:`._decoding`);
- with auth on (:mod:`._auth`), the deny handler of the method's shape, observed too (refused calls
  are counted), or none for the health service, which needs no token.

Per call the router does one dict lookup and, with auth on, the token check on the call's
metadata, then returns a handler built at start: no interceptor chain, nothing built per call.
A method registered only as a generic handler is looked up there and routed the same way on
first use; a method no one has is routed to nothing (grpc answers UNIMPLEMENTED) — or, without
the token, to the unknown-method deny handler. At most :data:`MAX_ROUTES` such names are kept
(callers choose method names); beyond, they are routed afresh per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc

from runtime_server.grpc._auth import BearerAuth
from runtime_server.grpc._decoding import guard
from runtime_server.grpc._observe import Observer

MAX_ROUTES = 1024  # routes of method names nothing registered (unknown, or generic-only)

# (the handler for an authorized call or None: no such method, the handler for one without the
# token or None: no token needed)
Route = tuple[grpc.RpcMethodHandler | None, grpc.RpcMethodHandler | None]


class Edge(grpc.GenericRpcHandler):  # type: ignore[misc]  # grpc is untyped
    def __init__(self, *, observer: Observer | None, auth: BearerAuth | None) -> None:
        self._observer = observer
        self._auth = auth
        self._routes: dict[str, Route] = {}
        self._generic: list[grpc.GenericRpcHandler] = []
        self._others = 0  # routes of names nothing registered

    # --- registration (the generated add_*_to_server functions call both) ---

    def add_generic_rpc_handlers(self, handlers: Sequence[grpc.GenericRpcHandler]) -> None:
        self._generic.extend(handlers)

    def add_registered_method_handlers(
        self, service: str, handlers: Mapping[str, grpc.RpcMethodHandler]
    ) -> None:
        for name, handler in handlers.items():
            method = f"/{service}/{name}"
            self._routes[method] = self._route(method, handler)

    def _route(self, method: str, handler: grpc.RpcMethodHandler | None) -> Route:
        observer, auth = self._observer, self._auth
        if handler is None:
            served = None
        elif observer is not None:
            served = observer.wrap(method, handler)
        else:
            served = guard(method, handler)
        if auth is None or auth.exempt(method):
            return served, None
        deny = auth.deny_handler(handler)
        if observer is None or handler is None:  # (an unknown method's: observed per call)
            return served, deny
        return served, observer.wrap(method, deny, refused=True)

    # --- per call ---

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = details.method
        route = self._routes.get(method)
        if route is None:
            route = self._route_other(details)
        served, deny = route
        auth = self._auth
        if deny is None or (auth is not None and auth.authorized(details.invocation_metadata)):
            return served
        if served is None and self._observer is not None:
            # a method no one has: its series (under "unknown", see _observe) exists only once
            # such a call was made, so its deny handler is observed per call, as calls come
            return self._observer.wrap(method, deny, refused=True)
        return deny

    def _route_other(self, details: grpc.HandlerCallDetails) -> Route:
        """A name no registration listed: a generic-only method, or none at all."""
        method: str = details.method
        handler = None
        for generic in self._generic:
            handler = generic.service(details)
            if handler is not None:
                break
        route = self._route(method, handler)
        if self._others < MAX_ROUTES:
            self._others += 1
            self._routes[method] = route
        return route
