"""Channel credentials from PEM files, so a caller of :class:`RuntimeClient` (or the CLI) never
needs to import grpc for TLS or mutual TLS.

The files are read and checked here, with the standard library's ``ssl``, because grpc core does
not check them itself: a client certificate without its key aborts the whole process inside grpc
(exit code 134), and a key that does not match its certificate only surfaces as a failed
handshake. Here each mistake (an unreadable file too) is a :class:`ValueError` naming the
argument.
"""

from __future__ import annotations

import os
import ssl

import grpc

__all__ = ["PathLike", "channel_credentials"]

PathLike = str | os.PathLike[str]


def _read(name: str, path: PathLike) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise ValueError(f"{name}: {exc.strerror}: {os.fspath(path)}") from None
    if b"-----BEGIN " not in data:
        raise ValueError(f"{name}: {os.fspath(path)} is not a PEM file")
    return data


def channel_credentials(
    tls: bool | grpc.ChannelCredentials = False,
    *,
    ca_file: PathLike | None = None,
    cert_file: PathLike | None = None,
    key_file: PathLike | None = None,
) -> grpc.ChannelCredentials | None:
    """None for plaintext; else the credentials of a TLS channel.

    ``tls=True`` with no files verifies the server against the system roots. ``ca_file`` (a PEM
    CA bundle) replaces the system roots; ``cert_file`` + ``key_file`` (PEM) present a client
    certificate for mutual TLS. Any file implies TLS. ``tls`` may also be ready-made
    ``grpc.ChannelCredentials`` (then no files).
    """
    files = (ca_file, cert_file, key_file)
    if not isinstance(tls, bool):
        if any(f is not None for f in files):
            raise ValueError("give either tls=<grpc.ChannelCredentials> or the PEM files, not both")
        return tls
    if (cert_file is None) != (key_file is None):
        given, missing = (
            ("cert_file", "key_file") if key_file is None else ("key_file", "cert_file")
        )
        raise ValueError(
            f"{given} without {missing}: a client certificate (mutual TLS) needs both the "
            "certificate chain and its private key"
        )
    if not tls and all(f is None for f in files):
        return None
    root = _read("ca_file", ca_file) if ca_file is not None else None
    chain = key = None
    if cert_file is not None and key_file is not None:
        chain, key = _read("cert_file", cert_file), _read("key_file", key_file)
        try:
            # a password callback, so an encrypted key fails here instead of prompting on a tty
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            context.load_cert_chain(cert_file, key_file, password=lambda: b"")
        except ssl.SSLError as exc:
            if "MISMATCH" in str(exc):
                why = "the key does not match the certificate"
            elif b"ENCRYPTED" in key:
                why = "the key is passphrase-protected, which grpc cannot use"
            else:
                why = f"not a usable PEM certificate and key ({exc.reason or exc})"
            raise ValueError(f"cert_file/key_file: {why}") from None
    return grpc.ssl_channel_credentials(
        root_certificates=root, private_key=key, certificate_chain=chain
    )
