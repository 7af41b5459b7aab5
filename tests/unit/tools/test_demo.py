"""Demo traffic: deterministic synthetic users covering every identity path."""

from __future__ import annotations

import io

from extproc.stack.demo import NAMED_USERS, DemoResult, print_report, synthetic_users


def test_synthetic_users_are_deterministic_and_cover_every_identity_path() -> None:
    users = synthetic_users(1000)
    assert users == synthetic_users(1000)
    assert [u.name for u in users[: len(NAMED_USERS)]] == NAMED_USERS
    assert len({u.name for u in users}) == 1000
    with_id = [u for u in users if "x-user-id" in u.headers]
    device_only = [u for u in users if "x-device-id" in u.headers]
    anonymous = [u for u in users if not {"x-user-id", "x-device-id"} & set(u.headers)]
    assert with_id and device_only and anonymous
    assert all({"x-region", "x-device-model"} <= set(u.headers) for u in users)


def test_report_shows_split_stickiness_and_rules() -> None:
    result = DemoResult(sent=4, seconds=1.0, logged=4)
    result.per_upstream.update({"v1": 3, "v2": 1})
    result.seen_by_user.update({"a": {"v1"}, "b": {"v1", "v2"}})
    result.decisions[("rules.ios-first", "split", "v2")] = 1
    out = io.StringIO()
    print_report(result, users=2, out=out)
    text = out.getvalue()
    assert "observed v2 share: 25.0 %" in text
    assert "users that saw more than one upstream: 1 of 2 (NOT STICKY)" in text
    assert "rules.ios-first" in text
