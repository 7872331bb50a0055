"""DNS rebinding cannot reach an open console: without a login token, the Backend answers only
requests whose ``Host`` is an IP address, ``localhost`` or a name in ``allowed_hosts``.

A page of another site whose name is made to resolve to 127.0.0.1 is same-origin with the
console to the browser: it could send the CSRF header and read every answer (transcripts, the
workers' list) and drive the agents. Its requests carry its own name as ``Host``; that is what
the check refuses. Over real HTTP against a real Backend subprocess (the browser version of the
attack is in tests/browser/test_console_dns_rebinding.py)."""

from __future__ import annotations

import pytest
from backend_serving import CSRF, ConsoleFactory

from backend.config import BackendConfigError, parse_config
from backend.security import host_allowed


async def test_a_foreign_host_name_is_refused_everywhere_on_an_open_console(
    console: ConsoleFactory,
) -> None:
    c = await console()
    port = c.backend.port
    _, remote_id = await c.runtime_ids()
    before = len((await c.call("GET", "/api/workers")).json()["workers"])
    foreign = {"host": f"rebind.attacker.example:{port}"}
    for method, path, body in [
        ("GET", "/", None),
        ("GET", "/api/workers", None),
        ("GET", "/metrics", None),
        ("POST", "/api/workers", {"runtime_id": remote_id, "profile": "slow"}),
    ]:
        resp = await c.http.request(method, path, json=body, headers={**CSRF, **foreign})
        assert resp.status_code == 403, (method, path, resp.text)
        error = resp.json()["error"]
        assert error["reason"] == "HOST_NOT_ALLOWED"
        assert "allowed_hosts" in error["message"]
    after = len((await c.call("GET", "/api/workers")).json()["workers"])
    assert after == before  # the forged create did not happen
    # What a user types is answered: the address, localhost, and the IPv6 loopback form.
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "127.0.0.1", f"[::1]:{port}"):
        resp = await c.http.get("/api/workers", headers={"host": host})
        assert resp.status_code == 200, (host, resp.text)


async def test_allowed_hosts_names_the_console(console: ConsoleFactory) -> None:
    named = await console(allowed_hosts=("console.lan",))
    port = named.backend.port
    ok = await named.http.get("/api/workers", headers={"host": f"Console.LAN:{port}"})
    assert ok.status_code == 200
    other = await named.http.get("/api/workers", headers={"host": f"other.lan:{port}"})
    assert other.status_code == 403


async def test_with_a_token_the_host_check_is_moot(console: ConsoleFactory) -> None:
    # With a token a rebinding origin has no session cookie: it gets the login wall, like any
    # client without one, and the page (the login form) is served under any name.
    locked = await console(token="console-tok-9f2e")
    port = locked.backend.port
    api = await locked.http.get("/api/workers", headers={"host": f"rebind.example:{port}"})
    assert api.status_code == 401
    page = await locked.http.get("/", headers={"host": f"console.example.com:{port}"})
    assert page.status_code == 200


@pytest.mark.parametrize(
    ("header", "allowed", "expected"),
    [
        ("127.0.0.1:8080", (), True),
        ("10.1.2.3", (), True),
        ("[::1]:8080", (), True),
        ("[fe80::1]", (), True),
        ("localhost:8080", (), True),
        ("app.localhost:8080", (), True),
        ("LOCALHOST.", (), True),
        ("", (), True),  # no Host header: not a browser
        ("attacker.example:8080", (), False),
        ("127.0.0.1.attacker.example", (), False),
        ("localhost.attacker.example", (), False),
        ("[::1", (), False),
        ("console.lan:8080", ("console.lan",), True),
        ("evil.lan:8080", ("console.lan",), False),
        ("anything.example", ("*",), True),
    ],
)
def test_host_header_rules(header: str, allowed: tuple[str, ...], expected: bool) -> None:
    assert host_allowed(header, allowed) is expected


def test_allowed_hosts_is_validated() -> None:
    assert parse_config({"allowed_hosts": ["Console.Lan"]}).allowed_hosts == ("console.lan",)
    for bad in (["http://x.lan"], ["x.lan:80"], [""], [7], "x.lan"):
        with pytest.raises(BackendConfigError, match=r"allowed_hosts"):
            parse_config({"allowed_hosts": bad})
