"""The Backend reads tokens as ``serve`` does: stripped, and a runtime's token checked.

The console's login token kept a trailing newline (a Kubernetes Secret made from a file has one),
so no one could type it: the console was locked. A remote runtime's token that gRPC metadata
cannot carry passed the config and failed later, as a traceback. Now both are stripped, and such a
runtime token is a config error naming its key, never showing the token.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from backend_serving import ConsoleFactory

from backend import BackendConfigError, load_config

CONFIG = '[[runtimes]]\ntarget = "127.0.0.1:50051"\ntoken_env = "RT_TOKEN"\n'


def test_tokens_are_stripped_and_a_runtime_token_is_checked(tmp_path: Path) -> None:
    path = tmp_path / "backend.toml"
    path.write_text('token_env = "CONSOLE_TOKEN"\n' + CONFIG, encoding="utf-8")
    cfg = load_config(path, env={"CONSOLE_TOKEN": "console-t0k\n", "RT_TOKEN": " rt-t0k\r\n"})
    assert cfg.token == "console-t0k"
    assert cfg.runtimes[0].token == "rt-t0k"
    for bad in ("rt t0k-secret", "rt-t\u00f6k-secret", "rt\tt0k-secret"):
        with pytest.raises(BackendConfigError, match=r"runtimes\[0\]\.token_env") as info:
            load_config(path, env={"CONSOLE_TOKEN": "c", "RT_TOKEN": bad})
        assert "secret" not in str(info.value)


async def test_a_login_token_with_a_trailing_newline_can_be_typed(console: ConsoleFactory) -> None:
    c = await console(token="console-tok-nl-4\n")
    login = await c.call("POST", "/api/login", json={"token": "console-tok-nl-4"})
    assert login.status_code == 204
    assert (await c.call("GET", "/api/workers")).status_code == 200
