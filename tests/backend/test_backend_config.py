"""The Backend's config file: the README's example parses, defaults are safe (loopback), bad
values name their key, and tokens come from the environment only."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from backend import BackendConfigError, load_config
from backend.config import parse_config

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_block() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Backend and web console", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```toml\n(.*?)```", section, re.DOTALL)
    assert found, "the README shows a Backend config"
    return found[1]


def test_the_readme_example_parses() -> None:
    env = {"WORKER_BACKEND_TOKEN": "t0k", "LAB_RUNTIME_TOKEN": "lab-t0k", "GPU1_RUNTIME_TOKEN": "g"}
    cfg = parse_config(tomllib.loads(readme_block()), env=env, base=Path("/srv"))
    assert cfg.listen == "127.0.0.1:8080"
    assert cfg.token == "t0k"
    assert cfg.data_dir == Path("/srv/backend-data")
    lab, gpu = cfg.runtimes
    assert (lab.alias, lab.target, lab.token, lab.tls) == (
        "lab",
        "127.0.0.1:50051",
        "lab-t0k",
        None,
    )
    assert gpu.tls is not None  # mutual TLS, files relative to the config's folder
    assert (gpu.tls.ca_file, gpu.tls.cert_file, gpu.tls.key_file) == (
        "/srv/tls/ca.pem", "/srv/tls/client.pem", "/srv/tls/client.key"
    )  # fmt: skip
    assert "lab-t0k" not in repr(cfg)
    assert "t0k" not in repr(cfg)


def test_defaults_bind_loopback_with_no_token() -> None:
    cfg = load_config(None, env={})
    assert cfg.listen.startswith("127.0.0.1:")
    assert cfg.token is None
    assert cfg.runtimes == ()


@pytest.mark.parametrize(
    ("data", "key"),
    [
        ({"listn": "x"}, "listn"),
        ({"listen": "nowhere"}, "listen"),
        ({"max_streams": 0}, "max_streams"),
        ({"heartbeat_s": "5"}, "heartbeat_s"),
        ({"store": "postgres"}, "store"),
        ({"companion": {"profil": "echo"}}, "companion.profil"),
        ({"runtimes": [{"alias": "x"}]}, "runtimes[0].target"),
        ({"runtimes": [{"target": "h:1", "token_env": "MISSING_VAR"}]}, "runtimes[0].token_env"),
        ({"token_env": "MISSING_VAR"}, "token_env"),
    ],
)
def test_bad_values_name_their_key(data: dict[str, object], key: str) -> None:
    with pytest.raises(BackendConfigError, match=re.escape(key)):
        parse_config(data, env={})


def test_the_companion_profile_is_configured_else_the_local_model_else_echo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import engine
    from backend import service

    cfg = parse_config({}, env={})
    profiles = {"echo", service.LOCAL_CHAT_PROFILE}
    monkeypatch.setattr(engine, "local_model_unavailable", lambda name="smollm2": None)
    assert service.companion_profile(cfg, profiles) == service.LOCAL_CHAT_PROFILE
    monkeypatch.setattr(engine, "local_model_unavailable", lambda name="smollm2": "not installed")
    assert service.companion_profile(cfg, profiles) == "echo"
    assert service.companion_profile(cfg, {"echo"}) == "echo"
    chosen = parse_config({"companion": {"profile": "echo-slow"}}, env={})
    assert service.companion_profile(chosen, profiles) == "echo-slow"
    # the default embedded config offers the local chat profile
    assert service.LOCAL_CHAT_PROFILE in service.runtime_config(cfg)[0].profiles
