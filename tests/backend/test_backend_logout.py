"""A console user can log out: ``POST /api/logout`` clears the session cookie. Before, there was
no way to end a session short of closing the browser (on a shared machine the next person had
the console). Like every change it needs the CSRF header, so another site cannot log you out.
Real HTTP to a real Backend subprocess."""

from __future__ import annotations

from backend_serving import ConsoleFactory


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
    """Behind a TLS-terminating proxy on this host (uvicorn trusts X-Forwarded-Proto from
    127.0.0.1), the session cookie is marked Secure; over plain HTTP it cannot be."""
    token = "console-tok-secure-2"
    c = await console(token=token)
    plain = await c.call("POST", "/api/login", json={"token": token})
    assert "secure" not in plain.headers["set-cookie"].lower()
    proxied = await c.call(
        "POST", "/api/login", json={"token": token}, headers={"x-forwarded-proto": "https"}
    )
    assert proxied.status_code == 204
    assert "; secure" in proxied.headers["set-cookie"].lower()
