"""The switch when things go wrong, and what it writes down: the CLI as a subprocess.

- The operator's ``--reason`` is audited beside the action (``reason`` is the action in the
  system's words, ``operator_reason`` the operator's), shown by ``status`` (table, --json).
- A state store that fails (etcd's quorum lost) is exit 4, naming the cause, N of M members
  reachable and what to do; not exit 3 ("admin API unavailable"), since the admin API was up.
- A change sent to a standby is exit 5 naming the leader's admin address; with
  ``--follow-leader`` the CLI sends it there and it is applied.
- ``status --json`` carries who leads and the controller's calendar time, not rounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from extproc.rollout.admin.table import leader_text
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.stores.etcd_types import EtcdUnavailable
from extproc.rollout.stores.leader import NotLeaderError

from .admin_harness import AdminThread, FakeController, audit_lines
from .test_admin_cli import rollout

QUORUM_LOST = (
    "etcd quorum lost: 1 of 3 members reachable, none with a raft leader; bring back "
    "members until 2 of 3 run (nothing can change meanwhile; sidecars keep the last state)"
)


def test_the_operators_reason_is_audited_beside_the_action(
    admin: AdminThread, state_path: Path
) -> None:
    assert rollout("start", "--admin", admin.target).returncode == 0
    done = rollout("rollback", "--admin", admin.target, "--reason", "MOS drop", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["operator_reason"] == "MOS drop"
    entry = audit_lines(state_path)[-1]
    assert (entry["reason"], entry["operator_reason"]) == ("rollback", "MOS drop")
    assert audit_lines(state_path)[0]["operator_reason"] == ""  # none given for start

    status = json.loads(rollout("status", "--admin", admin.target, "--json").stdout)
    assert (status["reason"], status["operator_reason"]) == ("rollback", "MOS drop")
    assert [(t["reason"], t["operator_reason"]) for t in status["transitions"]] == [
        ("start", ""),
        ("rollback", "MOS drop"),
    ]
    table = rollout("status", "--admin", admin.target).stdout
    assert "rollback (operator's reason: MOS drop)" in table
    assert "action" in table and "operator's reason" in table


def test_a_lost_etcd_quorum_is_exit_4_naming_the_cause(
    start_admin: Callable[..., AdminThread],
) -> None:
    failure = EtcdUnavailable(f"etcd txn: {QUORUM_LOST} (a:1: ...)", "quorum_lost", QUORUM_LOST)
    admin = start_admin(FakeController(failure))
    done = rollout("pause", "--admin", admin.target, "--reason", "peak hour")
    assert (done.returncode, done.stdout) == (4, "")
    assert done.stderr.startswith(
        f"extproc rollout pause: the controller at {admin.target} cannot use its state "
        f"store (quorum_lost): etcd txn: etcd quorum lost: 1 of 3 members reachable"
    )
    assert done.stderr.count("\n") == 1
    status = rollout("status", "--admin", admin.target)
    assert status.returncode == 4 and "etcd quorum lost" in status.stderr


def test_a_standby_says_where_to_go_and_the_cli_can_follow(
    admin: AdminThread, state_path: Path, start_admin: Callable[..., AdminThread]
) -> None:
    refusal = NotLeaderError(
        f"not the leader; leader is ctrl-a (admin {admin.target})", admin.target
    )
    standby = start_admin(FakeController(refusal))
    refused = rollout("start", "--admin", standby.target)
    assert (refused.returncode, refused.stdout) == (5, "")
    assert refused.stderr == (
        f"extproc rollout start: not the leader; leader is ctrl-a (admin {admin.target}): "
        f"{standby.target} stands by; rerun with --admin {admin.target} or --follow-leader\n"
    )
    followed = rollout("start", "--admin", standby.target, "--follow-leader", "--reason", "go")
    assert followed.returncode == 0, followed.stderr
    assert followed.stderr == f"extproc rollout start: following the leader to {admin.target}\n"
    assert audit_lines(state_path)[-1]["operator_reason"] == "go"


def test_status_json_shows_leadership_and_the_calendar_unrounded(
    controller: Controller, clock: FakeClock, admin: AdminThread
) -> None:
    clock.advance(0.123456)
    status = json.loads(rollout("status", "--admin", admin.target, "--json").stdout)
    assert status["calendar_time_unix"] == controller.clock.now()
    assert status["calendar_time"] == "2026-11-25T12:00:00.123456Z"
    assert status["leadership"]["elected"] is False  # a file store: no election
    assert status["leadership"]["replica_leads"] is True
    assert (
        "leader       no election (file store)" in rollout("status", "--admin", admin.target).stdout
    )


def test_the_leader_line_says_who_leads_since_when_and_who_answered() -> None:
    standby = {
        "elected": True,
        "replica": "ctrl-b",
        "replica_leads": False,
        "leader": "ctrl-a",
        "leader_admin": "10.0.0.7:50061",
        "leader_since": "2026-11-25T07:00:00.250000Z",
        "outage": "",
    }
    assert leader_text(standby) == (
        "ctrl-a, admin 10.0.0.7:50061, since 2026-11-25 07:00:00.250000; ctrl-b answered, "
        "standing by (changes go to the leader)"
    )
    leading = {**standby, "replica": "ctrl-a", "replica_leads": True}
    assert leader_text(leading) == (
        "ctrl-a (the replica that answered) leads, since 2026-11-25 07:00:00.250000"
    )
    lost = {**standby, "leader": None, "outage": "etcd quorum lost: 1 of 3 members reachable"}
    assert leader_text(lost) == (
        "none known (etcd quorum lost: 1 of 3 members reachable); ctrl-b answered, standing by"
    )
