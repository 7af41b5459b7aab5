"""The admin API's pure parts: who may call it, request values, the status table."""

from __future__ import annotations

import pytest

from extproc.rollout.admin.access import authorized, bearer, check_access, is_local
from extproc.rollout.admin.table import duration_text, render_status
from extproc.rollout.admin.wire import parse_share

TOKEN = "0123456789abcdef-token"


@pytest.mark.parametrize(
    ("address", "local"),
    [
        ("127.0.0.1:50061", True),
        ("127.8.9.10:1", True),
        ("[::1]:50061", True),
        ("localhost:50061", True),
        ("unix:/run/extproc/admin.sock", True),
        ("0.0.0.0:50061", False),
        ("[::]:50061", False),
        ("10.0.0.7:50061", False),
        ("admin.internal:50061", False),  # a name may resolve to anything
        ("unix-abstract:admin", False),  # any local user can connect to an abstract socket
    ],
)
def test_only_loopback_and_unix_sockets_are_local(address: str, local: bool) -> None:
    assert is_local(address) is local


def test_access_checks_say_what_to_do() -> None:
    assert check_access("127.0.0.1:50061", "").token == ""
    assert check_access("0.0.0.0:50061", TOKEN).token == TOKEN
    with pytest.raises(ValueError, match=r"^refusing to serve the admin API on 0\.0\.0\.0:1 "):
        check_access("0.0.0.0:1", "")
    with pytest.raises(ValueError, match=r"too short \(5 characters\); use at least 16"):
        check_access("127.0.0.1:1", "short")
    with pytest.raises(ValueError, match=r"^--admin \(or EXTPROC_ADMIN\): 'nowhere' is not"):
        check_access("nowhere", "")
    with pytest.raises(ValueError, match="needs a socket path"):
        check_access("unix:", "")


@pytest.mark.parametrize(
    ("authorization", "ok"),
    [
        (f"Bearer {TOKEN}", True),
        (f"bearer {TOKEN}", True),
        (f"Bearer  {TOKEN} ", True),
        (None, False),
        ("", False),
        (TOKEN, False),
        (f"Basic {TOKEN}", False),
        (f"Bearer {TOKEN[:-1]}", False),
        (f"Bearer {TOKEN}0", False),
    ],
)
def test_the_token_is_checked_after_the_bearer_scheme(authorization: str | None, ok: bool) -> None:
    assert authorized(authorization, TOKEN) is ok
    assert authorized(authorization, "")  # no token configured: anyone local may call


def test_bearer_metadata() -> None:
    assert bearer(TOKEN) == (("authorization", f"Bearer {TOKEN}"),)
    assert bearer("") == ()


@pytest.mark.parametrize(
    ("text", "buckets"),
    [("0%", 0), ("12.5%", 1250), (" 0.01% ", 1), ("100%", 10_000), ("7.25 %", 725)],
)
def test_shares_are_percentages_in_basis_points(text: str, buckets: int) -> None:
    assert parse_share(text) == buckets


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("12", "share '12' is not a percentage; write it like '12.5%'"),
        ("1e1%", "share '1e1%' is not a number; write it like '12.5%'"),
        ("nan%", "share 'nan%' is not a number; write it like '12.5%'"),
        ("100.01%", "share '100.01%' is out of range; allowed 0% to 100%"),
        ("-1%", "share '-1%' is out of range; allowed 0% to 100%"),
        ("0.005%", "share '0.005%' is finer than the 0.01% resolution"),
    ],
)
def test_a_bad_share_says_what_is_allowed(text: str, message: str) -> None:
    with pytest.raises(ValueError) as refused:
        parse_share(text)
    assert str(refused.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0, "0s"), (45, "45s"), (60, "1m"), (3600, "1h"), (3725, "1h 2m"), (90061, "1d 1h")],
)
def test_durations_read_in_two_units(seconds: float, text: str) -> None:
    assert duration_text(seconds) == text


def test_status_before_any_check_or_transition() -> None:
    status = {
        "rollout": "r",
        "revision": 0,
        "phase": "pending",
        "stage": 0,
        "share": "0%",
        "resume_share": "0%",
        "next_share": None,
        "next_step_in_seconds": None,
        "next_step_at": None,
        "frozen": False,
        "updated_at": "2026-11-25T12:00:00Z",
        "actor": "system",
        "reason": "created",
        "verdict": None,
        "checked_at": None,
        "guards": [],
        "transitions": [],
    }
    assert render_status(status).splitlines() == [
        "rollout      r (revision 0)",
        "phase        pending",
        "share        not started: sidecars serve the rules file's own share",
        "next step    none scheduled",
        "frozen       no",
        "last change  2026-11-25 12:00:00 by system: created",
        "",
        "guards       not checked yet",
        "",
        "last transitions (oldest first)",
        "  none yet",
    ]


def test_status_shows_audio_guards_in_their_units() -> None:
    def figure(name: str, signal: str, cohort: str, value: float, threshold: float) -> dict:
        return {
            "name": name,
            "signal": signal,
            "cohort": cohort,
            "value": value,
            "threshold": threshold,
            "samples": 6,
            "min_samples": 4,
            "verdict": "pass",
            "detail": "",
        }

    status = {
        "rollout": "r",
        "revision": 3,
        "phase": "ramping",
        "stage": 1,
        "share": "10%",
        "resume_share": "0%",
        "next_share": None,
        "next_step_in_seconds": None,
        "next_step_at": None,
        "frozen": False,
        "updated_at": "2026-11-25T12:00:00Z",
        "actor": "ops",
        "reason": "start",
        "verdict": "pass",
        "checked_at": "2026-11-25T12:01:00Z",
        "guards": [
            figure("mos-drop", "mos", "v2-v1", 0.2074, 0.5),
            figure("silence", "silence_ratio", "v2-v1", -0.004, 0.3),
            figure("invalid-audio", "invalid_audio_rate", "v2", 0.0, 0.1),
        ],
        "transitions": [],
    }
    rows = render_status(status).splitlines()
    assert "  mos-drop       mos                 v2-v1   0.2074  0.5        6 (min 4)  pass" in rows
    assert any(r.startswith("  silence ") and "-0.40%  30.00%" in r for r in rows)
    assert any(r.startswith("  invalid-audio ") and "0.00%   10.00%" in r for r in rows)
