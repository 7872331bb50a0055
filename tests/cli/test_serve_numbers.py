"""Numbers and names an operator gives ``serve`` (``--grace``, ``[limits]``, provider and profile
settings in the config file) are checked at start: NaN, infinity, a negative or an out-of-range
value, a tool no tool has, is one line and exit code 2.

Before, ``[limits] max_page_size = inf`` or a huge ``max_concurrent_streams`` stopped serve with
an OverflowError traceback (exit 1); ``max_workers = 5000000000`` started a server whose every
``GetRuntime`` answered INTERNAL (the value does not fit the reply's uint32); ``--grace nan``
started, and its shutdown ended in a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from serving import assert_one_line_usage_error, run_serve, serve_argv


@pytest.mark.parametrize(
    "line",
    [
        "max_page_size = inf",
        "max_page_size = 1e400",
        "heartbeat_interval_seconds = nan",
        "max_connection_idle_seconds = 1e300",
        "max_concurrent_streams = 99999999999",
        "max_message_bytes = 99999999999",
        "max_workers = 5000000000",
        "max_page_size = 0",  # before: every ListEvents / GetTranscript page came back empty
        "event_batch_max = 0",
        "transcript_page_max = 0",
    ],
)
def test_a_limit_out_of_range_is_refused_at_start(tmp_path: Path, line: str) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(f"[limits]\n{line}\n")
    done = run_serve([*serve_argv(None, store="memory"), "--config", str(config)], timeout=30)
    assert_one_line_usage_error(done, f"limits.{line.split()[0]}")


@pytest.mark.parametrize("grace", ["nan", "inf", "-1", "1e300"])
def test_grace_out_of_range_is_refused_at_start(grace: str) -> None:
    # a --grace that start-up accepted would leave this server running until the timeout
    done = run_serve([*serve_argv(None, store="memory"), f"--grace={grace}"], timeout=30)
    assert_one_line_usage_error(done, "--grace")


OPENAI = '[providers.o]\nkind = "openai_chat"\nbase_url = "http://127.0.0.1:9/v1"\n'


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        # before: each of these started, and every run of the profile failed INTERNAL
        ('[profiles.p]\nprovider = "builtin"\ntemperature = nan\n', "profiles.p.temperature"),
        ('[profiles.p]\nprovider = "builtin"\noptions = { delay_ms = nan }\n', "delay_ms"),
        ('[profiles.p]\nprovider = "builtin"\noptions = { delay_ms = "x" }\n', "delay_ms"),
        (
            OPENAI + '[profiles.p]\nprovider = "o"\nmodel = "m"\n'
            "options = { a = { b = [1, inf] } }\n",
            "profiles.p.options.a.b[1]",
        ),
        # before: a run that never ended, or retries that were no bound
        ('[profiles.p]\nprovider = "builtin"\noptions = { delay_ms = 1e300 }\n', "delay_ms"),
        (OPENAI + "max_retries = 99999999999\n", "providers.o.max_retries"),
        (OPENAI + "timeout_s = nan\n", "providers.o.timeout_s"),
        (OPENAI + "timeout_s = inf\n", "providers.o.timeout_s"),
        ('[profiles.p]\nprovider = "builtin"\ntool_timeout_s = nan\n', "tool_timeout_s"),
    ],
    ids=[
        "temperature-nan", "delay-nan", "delay-text", "options-inf", "delay-huge",
        "retries-huge", "timeout-nan", "timeout-inf", "tool-timeout-nan",
    ],
)  # fmt: skip
def test_a_profile_or_provider_number_out_of_range_is_refused_at_start(
    tmp_path: Path, body: str, needle: str
) -> None:
    config = tmp_path / "serve.toml"
    config.write_text(body)
    done = run_serve([*serve_argv(None, store="memory"), "--config", str(config)], timeout=30)
    assert_one_line_usage_error(done, needle)


def test_a_tool_name_no_tool_has_is_refused_at_start(tmp_path: Path) -> None:
    # before: a typo was left out silently, and the model simply never had the tool
    config = tmp_path / "serve.toml"
    config.write_text('[profiles.p]\nprovider = "builtin"\ntools = ["clock", "read_files"]\n')
    done = run_serve([*serve_argv(None, store="memory"), "--config", str(config)], timeout=30)
    assert_one_line_usage_error(done, "profiles.p.tools", "'read_files'", "read_file")
