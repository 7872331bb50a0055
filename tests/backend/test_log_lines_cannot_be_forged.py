"""Text that a caller or a remote party chose cannot forge a line of the text logs, over real
processes: a ``worker-runtime serve`` and a ``worker-backend serve`` pushing a config bundle to it.

A bundle whose unknown section is named ``"x\\nCRITICAL forged ..."`` is refused by the runtime
with CONFIG_BUNDLE_INVALID naming that key. Before, the runtime's access log wrote the error's
message as it was, newline and all, and so did the Backend's log line about the failed push: a
line of the attacker's choosing appeared in both logs, looking like any other record. Now every
text line escapes control characters (``\\n``), and a traceback's lines are indented, so a record
begins at the margin only where the logger began one.
"""

from __future__ import annotations

from pathlib import Path

from backend_serving import ConsoleFactory, eventually

FORGED = "CRITICAL forged.line: the runtime was compromised"
BUNDLE = (
    f'["x\\n{FORGED}\\u001b[2K"]\nkey = 1\n\n'
    '[profiles.helper]\nprovider = "builtin"\nmodel = "echo"\n'
)


def _forged_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(FORGED)]


async def test_a_key_with_a_newline_forges_no_log_line(
    console: ConsoleFactory, tmp_path: Path
) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    (bundles / "evil.toml").write_text(BUNDLE, encoding="utf-8")
    c = await console(bundles_dir=bundles)
    await c.runtime_ids()

    async def refused_everywhere() -> bool:
        listed = (await c.call("GET", "/api/bundles")).json()["bundles"]
        states = [r["state"] for b in listed for r in b["runtimes"]]
        return len(states) == 2 and set(states) == {"failed"}

    await eventually(refused_everywhere, timeout=30)

    def logged() -> bool:
        backend_log = c.backend.stderr()
        runtime_log = c.remote.stderr_path.read_text(errors="replace")
        return "put on runtime" in backend_log and "CONFIG_BUNDLE_INVALID" in runtime_log

    await eventually(logged, timeout=30)
    for log in (c.backend.stderr(), c.remote.stderr_path.read_text(errors="replace")):
        assert FORGED in log  # the text is there...
        assert _forged_lines(log) == []  # ...but never as a line of its own
        assert "\x1b" not in log  # nor a terminal escape
        assert f"\\n{FORGED}" in log
