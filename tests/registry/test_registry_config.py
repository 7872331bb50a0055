"""RegistryConfig: the Backend's ``[[runtimes]]`` tables parsed, every mistake an error naming its
key (never a token), tokens read from the environment when the registry is built; and the
RuntimeHandle protocol pinned to RuntimeClient's method set and signatures."""

from __future__ import annotations

import inspect
import tomllib
from pathlib import Path
from typing import Any

import pytest

from runtime_client import (
    ClientTLS,
    RegistryConfig,
    RegistryConfigError,
    RegistryOptions,
    RuntimeClient,
    RuntimeHandle,
    RuntimeRegistry,
)

GOOD = """
listen = "127.0.0.1:8080"          # the Backend's own key: ignored here

[[runtimes]]
target = "127.0.0.1:50051"
alias = "gpu-1"
token_env = "REG_TEST_TOKEN"
expected_runtime_id = "rt-1"

[[runtimes]]
target = "10.0.0.7:50051"
ca_file = "ca.pem"
cert_file = "client.pem"
key_file = "client.key"

[embedded]
alias = "local"
data_dir = "./embedded-data"
"""


def test_a_good_config() -> None:
    config = RegistryConfig.from_toml_dict(tomllib.loads(GOOD))
    first, second = config.runtimes
    assert (first.target, first.alias, first.token_env) == (
        "127.0.0.1:50051",
        "gpu-1",
        "REG_TEST_TOKEN",
    )
    assert first.expected_runtime_id == "rt-1"
    assert first.tls is None
    assert second.alias == "remote-2"  # a default display name, not the address
    assert second.tls == ClientTLS("ca.pem", "client.pem", "client.key")
    assert config.embedded is not None
    assert (config.embedded.alias, config.embedded.data_dir) == ("local", "./embedded-data")


def test_load_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "backend.toml"
    path.write_text(GOOD)
    assert len(RegistryConfig.load(path).runtimes) == 2
    path.write_text("[[runtimes]]\ntarget = ")
    with pytest.raises(RegistryConfigError, match="invalid TOML"):
        RegistryConfig.load(path)


BAD: list[tuple[dict[str, Any], str]] = [
    ({"runtimes": {"target": "a:1"}}, "runtimes: must be an array"),
    ({"runtimes": [{}]}, "runtimes[0].target: required"),
    ({"runtimes": [{"target": "nohost"}]}, "runtimes[0].target: expected host:port"),
    ({"runtimes": [{"target": "h:99999"}]}, "runtimes[0].target: expected host:port"),
    # a URL was accepted (host "http://h"), then only ever UNREACHABLE with no word of why
    ({"runtimes": [{"target": "http://h:50051"}]}, "runtimes[0].target: expected host:port"),
    ({"runtimes": [{"target": "dns:///h:50051"}]}, "runtimes[0].target: expected host:port"),
    ({"runtimes": [{"target": "h :50051"}]}, "runtimes[0].target: expected host:port"),
    ({"runtimes": [{"target": "h:1", "tokn_env": "X"}]}, "runtimes[0].tokn_env: unknown key"),
    ({"runtimes": [{"target": "h:1", "tls": "yes"}]}, "runtimes[0].tls: must be true or false"),
    ({"runtimes": [{"target": "h:1", "cert_file": "c"}]}, "runtimes[0].key_file:"),
    ({"runtimes": [{"target": "h:1", "token_env": "A B"}]}, "runtimes[0].token_env:"),
    ({"runtimes": [{"target": "h:1", "alias": ""}]}, "runtimes[0].alias: must be a non-empty"),
    (
        {"runtimes": [{"target": "h:1"}, {"target": "h:1"}]},
        "runtimes[1].target: 'h:1' is already used by runtimes[0]",
    ),
    (
        {"runtimes": [{"target": "h:1", "alias": "a"}, {"target": "h:2", "alias": "a"}]},
        "runtimes[1].alias: 'a' is already used by runtimes[0]",
    ),
    (
        {
            "runtimes": [
                {"target": "h:1", "expected_runtime_id": "x"},
                {"target": "h:2", "expected_runtime_id": "x"},
            ]
        },
        "runtimes[1].expected_runtime_id: 'x' is already used by runtimes[0]",
    ),
    (
        {"embedded": {"alias": "e"}, "runtimes": [{"target": "h:1", "alias": "e"}]},
        "runtimes[0].alias: 'e' is already used by embedded",
    ),
    ({"embedded": {"dir": "x"}}, "embedded.dir: unknown key"),
]


@pytest.mark.parametrize(("data", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_config_names_the_key(data: dict[str, Any], message: str) -> None:
    with pytest.raises(RegistryConfigError) as bad:
        RegistryConfig.from_toml_dict(data)
    assert str(bad.value).startswith(message)


async def test_tokens_come_from_the_environment_and_never_show(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = tomllib.loads(GOOD)
    for key in ("ca_file", "cert_file", "key_file"):  # (no PEM files here: system roots)
        del data["runtimes"][1][key]
    data["runtimes"][1]["tls"] = True
    config = RegistryConfig.from_toml_dict(data)
    monkeypatch.delenv("REG_TEST_TOKEN", raising=False)
    with pytest.raises(RegistryConfigError, match=r"^runtimes\[0\]\.token_env: \$REG_TEST_TOKEN"):
        RuntimeRegistry.from_config(config)
    monkeypatch.setenv("REG_TEST_TOKEN", "s3cret-token-value")
    registry = RuntimeRegistry.from_config(config, options=RegistryOptions())
    statuses = registry.runtimes()
    assert [s.alias for s in statuses] == ["gpu-1", "remote-2"]
    assert statuses[0].runtime_id == "rt-1"  # pinned from config before any contact
    assert "s3cret" not in repr(statuses)
    assert "127.0.0.1:50051" not in repr(statuses)
    await registry.close()


def test_tls_files_are_checked_when_registered(tmp_path: Path) -> None:
    config = RegistryConfig.from_toml_dict(
        {"runtimes": [{"target": "h:1"}, {"target": "h:2", "ca_file": str(tmp_path / "no.pem")}]}
    )
    with pytest.raises(RegistryConfigError, match=r"^runtimes\[1\]\.ca_file: No such file"):
        RuntimeRegistry.from_config(config)
    (tmp_path / "junk.pem").write_text("not pem")
    with pytest.raises(ValueError, match=r"^ca_file: .* is not a PEM file"):
        RuntimeRegistry().add_remote("h:3", tls=ClientTLS(ca_file=str(tmp_path / "junk.pem")))


def test_registration_mistakes() -> None:
    registry = RuntimeRegistry()
    registry.add_remote("127.0.0.1:1", alias="a", expected_runtime_id="x")
    with pytest.raises(ValueError, match=r"^target:"):
        registry.add_remote("127.0.0.1:1", alias="b")
    with pytest.raises(ValueError, match=r"^alias:"):
        registry.add_remote("127.0.0.1:2", alias="a")
    with pytest.raises(ValueError, match=r"^expected_runtime_id:"):
        registry.add_remote("127.0.0.1:3", alias="c", expected_runtime_id="x")
    with pytest.raises(TypeError, match=r"^handle:"):
        registry.add_embedded(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"RegistryOptions\.probe_timeout_s"):
        RegistryOptions(probe_timeout_s=0)


def _methods(cls: type) -> dict[str, inspect.Signature]:
    """Public plain functions (coroutines, async generators, close): not properties or
    classmethods."""
    return {
        name: inspect.signature(fn)
        for name, fn in inspect.getmembers(cls, inspect.isfunction)
        if not name.startswith("_")
    }


def test_the_handle_protocol_is_the_clients_method_set() -> None:
    client = _methods(RuntimeClient)
    protocol = _methods(RuntimeHandle)
    assert set(protocol) == set(client)
    for name, sig in protocol.items():
        theirs = client[name]
        assert [(p.name, p.kind, p.default) for p in sig.parameters.values()] == [
            (p.name, p.kind, p.default) for p in theirs.parameters.values()
        ], name
        assert str(sig.return_annotation) == str(theirs.return_annotation), name
    # a RuntimeClient is a RuntimeHandle (structurally)
    assert issubclass(RuntimeClient, RuntimeHandle)
