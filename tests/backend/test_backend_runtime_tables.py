"""The Backend's ``[[runtimes]]`` tables are runtime_client's RegistryConfig tables: TLS and mutual
TLS keys, its checks (as BackendConfigError naming the key), relative files resolved against the
config file's folder, and the PEM files checked when the registry is built (before ``serve``
binds), naming the key and never a token."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from tlsfiles import make_certs

from backend.config import BackendConfigError, load_config, parse_config
from backend.service import build_registry
from runtime_client import ClientTLS

TOKEN = "table-tok-93be1c"


@pytest.mark.parametrize(
    ("tables", "key"),
    [
        ([{"target": "h:1", "tls": "yes"}], "runtimes[0].tls"),
        ([{"target": "h:1", "cert_file": "c.pem"}], "runtimes[0].key_file"),
        ([{"target": "h:1", "token_file": "/t"}], "runtimes[0].token_file"),  # unknown key
        ([{"target": "h:1", "token_env": "NOT A NAME"}], "runtimes[0].token_env"),
        ([{"target": "nowhere"}], "runtimes[0].target"),
        ([{"target": "h:1", "alias": "embedded"}], "runtimes[0].alias"),  # the Backend's own
        ([{"target": "h:1"}, {"target": "h:1"}], "runtimes[1].target"),
        ([{"target": "a:1", "alias": "x"}, {"target": "b:1", "alias": "x"}], "runtimes[1].alias"),
        ("not-a-list", "runtimes"),
    ],
)
def test_bad_runtime_tables_name_their_key(tables: Any, key: str) -> None:
    with pytest.raises(BackendConfigError, match=re.escape(key)) as caught:
        parse_config({"runtimes": tables}, env={"T": TOKEN})
    assert str(caught.value).startswith("<config>: ")


def test_tls_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "b.toml").write_text(
        '[[runtimes]]\ntarget = "a:1"\nca_file = "tls/ca.pem"\ncert_file = "/abs/c.pem"\n'
        'key_file = "c.key"\n\n[[runtimes]]\ntarget = "b:1"\ntls = true\n\n'
        '[[runtimes]]\ntarget = "c:1"\ntoken_env = "T"\n'
    )
    a, b, c = load_config(tmp_path / "b.toml", env={"T": TOKEN}).runtimes
    assert a.tls == ClientTLS(
        ca_file=str(tmp_path / "tls/ca.pem"),
        cert_file="/abs/c.pem",
        key_file=str(tmp_path / "c.key"),
    )
    assert b.tls == ClientTLS()  # TLS with the system roots
    assert (c.tls, c.token) == (None, TOKEN)  # plaintext
    assert [r.alias for r in (a, b, c)] == ["remote-1", "remote-2", "remote-3"]
    assert TOKEN not in repr(c)


def test_the_pem_files_are_checked_when_the_registry_is_built(tmp_path: Path) -> None:
    certs = make_certs(tmp_path)

    def build(**files: Path) -> None:
        table = {"target": "127.0.0.1:1", "token_env": "T", **{k: str(v) for k, v in files.items()}}
        build_registry(parse_config({"runtimes": [table]}, env={"T": TOKEN}))

    build(ca_file=certs.ca, cert_file=certs.client_cert, key_file=certs.client_key)  # fine
    cases: list[tuple[dict[str, Path], str]] = [
        ({"ca_file": tmp_path / "missing.pem"}, "runtimes[0].ca_file: No such file"),
        ({"ca_file": certs.ca, "cert_file": certs.client_cert, "key_file": certs.other_key},
         "runtimes[0].cert_file/key_file: the key does not match"),
        ({"cert_file": certs.client_cert, "key_file": certs.encrypted_key},
         "runtimes[0].cert_file/key_file:"),
        ({"ca_file": tmp_path / "ca.ext"}, "runtimes[0].ca_file:"),  # not PEM
    ]  # fmt: skip
    for files, message in cases:
        with pytest.raises(BackendConfigError, match=re.escape(message)) as caught:
            build(**files)
        assert TOKEN not in str(caught.value)
