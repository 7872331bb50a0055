"""A console user can log out: ``POST /api/logout`` clears the session cookie. Before, there was
no way to end a session short of closing the browser (on a shared machine the next person had
the console). Like every change it needs the CSRF header, so another site cannot log you out.
Real HTTP to a real Backend subprocess."""

from __future__ import annotations

import hashlib
import hmac

from backend_serving import ConsoleFactory

from backend.security import COOKIE, Sessions


async def test_logout_ends_the_session(console: ConsoleFactory) -> None:
    token = "console-tok-logout-1"
    c = await console(token=token)
    assert (await c.call("POST", "/api/login", json={"token": token})).status_code == 204
    assert (await c.call("GET", "/api/workers")).status_code == 200

    forged = await c.http.post("/api/logout")  # no CSRF header: a cross-site form
    assert forged.status_code == 403
    assert (await c.call("GET", "/api/workers")).status_code == 200

    out = await c.call("POST", "/api/logout")
    assert out.status_code == 204
    cleared = out.headers["set-cookie"].lower()
    assert "worker_console_session=" in cleared
    assert "max-age=0" in cleared
    assert (await c.call("GET", "/api/workers")).status_code == 401
    assert (await c.call("GET", "/api/session")).json()["authenticated"] is False


async def test_the_cookie_is_secure_behind_an_https_proxy(console: ConsoleFactory) -> None:
    """Behind a TLS-terminating proxy on this host (named in trusted_proxies: X-Forwarded-Proto
    is believed from it), the session cookie is marked Secure; over plain HTTP it cannot be."""
    token = "console-tok-secure-2"
    c = await console(token=token, trusted_proxies=("127.0.0.1",))
    plain = await c.call("POST", "/api/login", json={"token": token})
    assert "secure" not in plain.headers["set-cookie"].lower()
    proxied = await c.call(
        "POST", "/api/login", json={"token": token}, headers={"x-forwarded-proto": "https"}
    )
    assert proxied.status_code == 204
    assert "; secure" in proxied.headers["set-cookie"].lower()


async def test_each_login_is_its_own_session_and_logout_revokes_it(console: ConsoleFactory) -> None:
    """The cookie is a random id per login, not a function of the token: two logins get two
    values, and logging one out makes a copy of its cookie useless while the other lives on."""
    token = "console-tok-sessions-3"
    c = await console(token=token)
    first = await c.call("POST", "/api/login", json={"token": token})
    second = await c.call("POST", "/api/login", json={"token": token})
    a, b = first.cookies[COOKIE], second.cookies[COOKIE]
    assert a
    assert b
    assert a != b

    def with_cookie(value: str) -> dict[str, str]:
        return {"cookie": f"{COOKIE}={value}"}

    c.http.cookies.clear()
    assert (await c.call("GET", "/api/workers", headers=with_cookie(a))).status_code == 200
    assert (await c.call("POST", "/api/logout", headers=with_cookie(a))).status_code == 204
    c.http.cookies.clear()
    assert (await c.call("GET", "/api/workers", headers=with_cookie(a))).status_code == 401
    assert (await c.call("GET", "/api/workers", headers=with_cookie(b))).status_code == 200


async def test_a_cookie_computed_from_a_guessed_token_is_refused(console: ConsoleFactory) -> None:
    """The old cookie was an HMAC of the token under a constant: whoever guessed a token could
    compute its cookie offline and test it on any API path, bypassing the throttled login."""
    token = "console-tok-forged-4"
    c = await console(token=token)
    forged = hmac.new(
        token.encode(), b"worker-backend console session v1", hashlib.sha256
    ).hexdigest()
    c.http.cookies.clear()
    resp = await c.call("GET", "/api/workers", headers={"cookie": f"{COOKIE}={forged}"})
    assert resp.status_code == 401
    session = await c.call("GET", "/api/session", headers={"cookie": f"{COOKIE}={forged}"})
    assert session.json()["authenticated"] is False


def test_sessions_are_bounded_oldest_first() -> None:
    sessions = Sessions(limit=3)
    ids = [sessions.new() for _ in range(5)]
    assert len(sessions) == 3
    assert [sessions.valid(s) for s in ids] == [False, False, True, True, True]
    sessions.end(ids[3])
    assert not sessions.valid(ids[3])
    assert sessions.valid(ids[4])
    assert not sessions.valid("")
    assert not sessions.valid("\ud800")
