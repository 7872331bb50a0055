"""Checks of ``serve``'s flags and files before anything starts, so a mistake is one clear line
and exit code 2 — never a traceback from deep inside grpc ("Failed to bind"), never a server that
quietly runs in a mode the operator did not ask for (plaintext although a client CA was given).

Standard library only (``ssl`` checks the PEM files): ``serve`` imports grpc after these pass.
"""

from __future__ import annotations

import argparse
import errno
import ipaddress
import logging
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "StartupError",
    "TLSPaths",
    "check_bindable",
    "check_secret_mode",
    "check_exposure",
    "is_loopback",
    "check_tls",
    "listen_address",
    "log_level",
]


class StartupError(Exception):
    """A bad flag or file: ``serve`` prints ``error: <message>`` and exits 2."""


def listen_address(text: str) -> str:
    """argparse type of ``--listen``: ``HOST:PORT`` (``[v6]:PORT`` for IPv6), port 0-65535."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise argparse.ArgumentTypeError(
            f"expected HOST:PORT (e.g. 127.0.0.1:50051, [::1]:50051; port 0 = any free port), "
            f"got {text!r}"
        )
    if host.startswith("["):
        if not host.endswith("]"):
            raise argparse.ArgumentTypeError(f"unbalanced brackets in {text!r}")
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an IPv6 address: {host!r}") from None
    elif ":" in host:
        raise argparse.ArgumentTypeError(f"write an IPv6 host in brackets: [{host}]:{port}")
    return text


def check_bindable(listen: str) -> None:
    """Bind (and release) the address the way the server will: without SO_REUSEPORT, so a port
    another process listens on is refused here with the OS's reason, in one line. (grpc's own
    failure is a core log line plus an exception; it remains the backstop for a race.)"""
    host, _, port = listen.rpartition(":")
    if int(port) == 0:
        return
    host = host.strip("[]")
    try:
        infos = socket.getaddrinfo(
            host, int(port), type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"--listen: cannot resolve {host!r}: {exc.strerror}") from None
    failures: list[OSError] = []
    for family, kind, proto, _, address in infos:
        try:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as grpc does
                probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:  # even one taken address: calls could go astray
                raise StartupError(
                    f"--listen: cannot listen on {listen}: {exc.strerror} "
                    "(another server holds the port)"
                ) from None
            failures.append(exc)
    if failures and len(failures) == len(infos):  # grpc serves if any one address binds
        raise StartupError(f"--listen: cannot listen on {listen}: {failures[0].strerror}")


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback address (``localhost``, 127.0.0.0/8,
    ``[::1]``). A name that does not resolve is not loopback (the bind check reports it)."""
    host = host.strip("[]")
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def check_exposure(listen: str, *, authenticated: bool, allow_unauthenticated: bool) -> None:
    """Refuse an API that anyone on the network could drive: a non-loopback ``--listen`` (which
    includes ``0.0.0.0``) needs a bearer token or client certificates, unless the operator says
    ``--allow-unauthenticated`` (a network they trust entirely, e.g. a NetworkPolicy)."""
    host = listen.rpartition(":")[0]
    if authenticated or allow_unauthenticated or is_loopback(host):
        return
    raise StartupError(
        f"--listen: {listen} is reachable from the network and nothing authenticates callers: "
        "require a token (--auth-token-env or --auth-token-file) or client certificates "
        "(--tls-client-ca), or pass --allow-unauthenticated if every host that can reach "
        "this address may drive the runtime"
    )


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def log_level(text: str) -> str:
    """argparse type of ``--log-level``: a standard logging level name, any case."""
    level = text.upper()
    if level not in LOG_LEVELS or not isinstance(logging.getLevelName(level), int):
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(LOG_LEVELS)}, got {text!r}")
    return level


MAX_GRACE_SECONDS = 86_400.0


def grace_seconds(text: str) -> float:
    """argparse type of ``--grace``: seconds, 0 to a day. Before, ``nan`` was accepted and made
    the shutdown end in a traceback (asyncio's timer cannot take NaN) and ``-1`` was taken."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 <= value <= MAX_GRACE_SECONDS:  # nan and inf fail this too
        raise argparse.ArgumentTypeError(
            f"expected seconds from 0 to {MAX_GRACE_SECONDS:,.0f}, got {text!r}"
        )
    return value


@dataclass(frozen=True, slots=True)
class TLSPaths:
    cert: Path
    key: Path
    client_ca: Path | None  # set: client certificates are required (mutual TLS)

    @property
    def mode(self) -> str:
        """How the banner describes it."""
        if self.client_ca is not None:
            return "mTLS (client certificates required)"
        return "on (server certificate; clients not authenticated by certificate)"


def _pair_problem(exc: ssl.SSLError, key: Path) -> str:
    """Why ``load_cert_chain`` refused a certificate and key, in words."""
    if "MISMATCH" in str(exc):
        return "the key does not match the certificate"
    try:
        if b"ENCRYPTED" in key.read_bytes():
            return "the key is passphrase-protected, which grpc cannot use"
    except OSError:
        pass
    return f"not a usable PEM certificate and key ({exc.reason or exc})"


def check_secret_mode(flag: str, path: Path) -> None:
    """Refuse a secret file (the bearer token, the TLS private key) that every user of the host
    may read or write: anyone logged in could take the token or the key. Its owner and group may
    read it — Kubernetes mounts a Secret group-readable (``defaultMode: 0440`` with the pod's
    ``fsGroup``, as deploy/kubernetes does). Kubernetes' own default mode, 0644, is refused:
    the manifests set 0440, and a copy that does not is told how to fix it. The message names
    the path and its mode, never the content. The mode is the file's (a symlink, as Kubernetes
    mounts Secrets, is followed)."""
    try:
        mode = path.stat().st_mode & 0o777
    except OSError:
        return  # reading it reports the error in words
    if mode & 0o007:
        raise StartupError(
            f"{flag}: {path} is readable or writable by every user of this host (mode "
            f"{mode:04o}): make it private (chmod 600, or 640 for a group that must read it; "
            "in Kubernetes, the Secret volume's defaultMode: 0440 with the pod's fsGroup)"
        )


def check_tls(cert: Path | None, key: Path | None, client_ca: Path | None) -> TLSPaths | None:
    """None when no TLS option is given; else the checked paths.

    Any TLS option needs the complete server pair (a client CA alone would otherwise leave the
    server on plaintext while the operator believes it requires client certificates). The files
    must be readable PEM, the key must match the certificate, and the client CA must be loadable:
    grpc itself would only fail at bind time with "Failed to bind".
    """
    if cert is None and key is None and client_ca is None:
        return None
    if cert is None or key is None:
        given = [
            f for f, v in (("--tls-cert", cert), ("--tls-key", key), ("--tls-client-ca", client_ca))
            if v is not None
        ]  # fmt: skip
        raise StartupError(
            f"{' and '.join(given)} given, but TLS needs both --tls-cert and --tls-key "
            "(the server's certificate chain and private key)"
        )
    for flag, path in (("--tls-cert", cert), ("--tls-key", key), ("--tls-client-ca", client_ca)):
        if path is None:
            continue
        try:
            with path.open("rb") as f:
                f.read(1)
        except OSError as exc:
            raise StartupError(f"{flag}: {exc.strerror}: {path}") from None
    check_secret_mode("--tls-key", key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # a password callback, so an encrypted key fails here instead of prompting on a tty
        context.load_cert_chain(cert, key, password=lambda: b"")
    except ssl.SSLError as exc:
        why = _pair_problem(exc, key)
        raise StartupError(f"--tls-cert/--tls-key: {why} ({cert}, {key})") from None
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except ssl.SSLError as exc:
            raise StartupError(
                f"--tls-client-ca: not a PEM CA bundle ({exc.reason}): {client_ca}"
            ) from None
    return TLSPaths(cert, key, client_ca)
