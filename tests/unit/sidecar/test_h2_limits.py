"""The HTTP/2 server's limits: settings parsing, flood buckets, throttled warnings."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest

from extproc.h2_limits import DEFAULTS, LIMIT_SETTINGS, Flood, H2Limits, limits_from_env
from extproc.sidecar.h2.guards import Bucket, ThrottledLog

REPO = Path(__file__).resolve().parents[3]


def test_defaults_when_nothing_is_set() -> None:
    assert limits_from_env({}) == H2Limits()


def test_every_limit_is_read_from_its_variable() -> None:
    env = {
        "EXTPROC_H2_MAX_CONCURRENT_STREAMS": "50",
        "EXTPROC_H2_IDLE_TIMEOUT": "2.5",
        "EXTPROC_H2_PING_FLOOD": "10,0.5",
    }
    limits = limits_from_env(env)
    assert (limits.max_concurrent_streams, limits.idle_timeout) == (50, 2.5)
    assert limits.ping_flood == Flood(10, 0.5)
    assert limits.backlog == DEFAULTS.backlog


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"EXTPROC_H2_BACKLOG": "many"}, "EXTPROC_H2_BACKLOG: 'many' is not a whole number"),
        ({"EXTPROC_H2_BACKLOG": "0"}, "EXTPROC_H2_BACKLOG: 0 is not within 1..2147483647"),
        ({"EXTPROC_H2_STREAM_WINDOW": "100"}, "EXTPROC_H2_STREAM_WINDOW: 100 is not within"),
        ({"EXTPROC_H2_IDLE_TIMEOUT": "0"}, "EXTPROC_H2_IDLE_TIMEOUT: '0' must be greater than 0"),
        ({"EXTPROC_H2_PING_FLOOD": "10"}, "EXTPROC_H2_PING_FLOOD: '10' is not BURST,PER_SECOND"),
        ({"EXTPROC_H2_RESET_FLOOD": "0,5"}, "EXTPROC_H2_RESET_FLOOD: '0,5' needs BURST >= 1"),
    ],
)
def test_a_bad_limit_names_its_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        limits_from_env(env)


def test_help_lists_every_limit_with_its_default() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "extproc", "serve", "--help"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for env, default, _ in LIMIT_SETTINGS:
        assert f"{env}" in help_text and repr(default) in help_text, env


def test_bad_limit_at_start_is_exit_2_naming_it() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "extproc", "serve", "--rules", "examples/rules.yaml"],
        capture_output=True,
        text=True,
        env={"EXTPROC_H2_MAX_CONNECTIONS": "x", "PATH": ""},
        timeout=60,
        cwd=REPO,
    )
    assert run.returncode == 2
    assert "EXTPROC_H2_MAX_CONNECTIONS" in run.stderr


def test_bucket_allows_the_burst_then_the_rate() -> None:
    bucket = Bucket(Flood(3, 2.0), now=100.0)
    assert [bucket.take(100.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.take(100.25) is False  # half a token
    assert bucket.take(100.5) is True  # 0.5 s x 2/s = one token
    assert bucket.take(100.5) is False
    assert [bucket.take(200.0) for _ in range(4)] == [True, True, True, False]  # capped at burst


def test_throttled_log_writes_one_line_per_period_with_the_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    warnings = ThrottledLog(logging.getLogger("test.h2"), every=10.0)
    with caplog.at_level(logging.WARNING, "test.h2"):
        for t in range(25):
            warnings.warn(float(t), "flood", "closed a connection")
        warnings.warn(0.0, "other", "x")
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "h2 flood: closed a connection",
        "h2 flood: closed a connection (and 9 more of this kind in the last 10s)",
        "h2 flood: closed a connection (and 9 more of this kind in the last 10s)",
        "h2 other: x",
    ]


def test_the_connection_budget_is_within_8_mib() -> None:
    assert DEFAULTS.connection_budget() <= 8 * (1 << 20)
