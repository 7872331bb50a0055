"""Guessing the console's token online is slow, and never slows the right token.

``POST /api/login`` answered every wrong token at once, from any number of connections: a short
token could be found online. Now wrong guesses are answered one at a time, each after half a
second, over all clients, while a login with the right token is checked first and answered at
once, whatever the flood. Real HTTP to a real Backend subprocess.
"""

from __future__ import annotations

import asyncio
import time

from backend_serving import ConsoleFactory

FAILED_LOGIN_DELAY_S = 0.5  # the Backend's delay per wrong guess (backend._routes)

GUESSES = 8
MAX_WAITING = 16  # wrong logins the Backend lets wait at once (backend._routes)


async def test_wrong_guesses_are_serialised_and_the_right_token_is_not(
    console: ConsoleFactory,
) -> None:
    token = "console-tok-guess-5"
    c = await console(token=token)
    started = time.monotonic()
    finished: list[float] = []

    async def guess(i: int) -> int:
        resp = await c.call("POST", "/api/login", json={"token": f"guess-{i}"})
        finished.append(time.monotonic())
        return resp.status_code

    flood = [asyncio.create_task(guess(i)) for i in range(GUESSES)]
    await asyncio.sleep(FAILED_LOGIN_DELAY_S)  # the flood is under way
    right = await c.call("POST", "/api/login", json={"token": token})
    answered = time.monotonic()
    assert right.status_code == 204
    statuses = await asyncio.gather(*flood)
    assert statuses == [401] * GUESSES
    # one at a time, each after the delay: the last wrong answer came no sooner than this
    # (a lower bound the server enforces, not a speed measurement)
    assert max(finished) - started >= GUESSES * FAILED_LOGIN_DELAY_S
    # the right token did not queue behind the flood: it was answered before its end
    assert answered < max(finished)


async def test_a_flood_past_the_waiting_bound_is_refused_at_once(console: ConsoleFactory) -> None:
    """At most 16 wrong logins wait their turn; more at once are answered 429 at once, so a flood
    never piles up requests and sockets on the Backend. The right token still gets in."""
    token = "console-tok-flood-6"
    c = await console(token=token)
    flood = [
        asyncio.create_task(c.call("POST", "/api/login", json={"token": f"flood-{i}"}))
        for i in range(MAX_WAITING + 12)
    ]
    # the queue takes 16 x 0.5 s to drain: what is answered well before that was refused
    done, _pending = await asyncio.wait(flood, timeout=MAX_WAITING * FAILED_LOGIN_DELAY_S / 2)
    refused = [t.result() for t in done if t.result().status_code == 429]
    assert refused, "no wrong login was refused while the queue was full"
    assert all(r.json()["error"]["reason"] == "TOO_MANY_LOGIN_ATTEMPTS" for r in refused)
    assert (await c.call("POST", "/api/login", json={"token": token})).status_code == 204
    statuses = [r.status_code for r in await asyncio.gather(*flood)]
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) >= MAX_WAITING
