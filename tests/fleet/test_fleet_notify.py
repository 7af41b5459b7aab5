"""Notifications from a fleet of controller processes on a real etcd cluster: only the leader
sends. Two replicas with the same policy (a webhook sink to one loopback receiver) ramp one
rollout; the leader hands over on SIGTERM mid-ramp. The receiver gets every revision of the
audit log exactly once, each from the replica that wrote it, plus one leadership event per
new leader; the standby sends nothing while standing by. The new leader's ``--metrics``
counts its deliveries and serves every declared notification series."""

from __future__ import annotations

import urllib.request
from pathlib import Path

import pytest

from extproc.rollout.notify import metrics
from extproc.stack.processes import free_port, wait_until
from tests.fleet.conftest import StoreFactory
from tests.fleet.controllers import RAMP_POLICY, FleetController, current, leader_of
from tests.support import promql
from tests.support.etcd_cluster import EtcdCluster
from tests.support.notify_receiver import Receiver, verify_signature

KEY = "fleet-notify-hmac-key-0123456789"
SINK = """  notify:
    - {{name: ops, type: webhook, url: "{url}", secret: {{env: TTS_FLEET_NOTIFY_KEY}}}}
"""


def test_only_the_leader_notifies_and_each_revision_arrives_once(
    etcd: EtcdCluster,
    prefix: str,
    open_store: StoreFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TTS_FLEET_NOTIFY_KEY", KEY)  # the controller processes inherit it
    with Receiver() as receiver:
        policy = tmp_path / "policy.yaml"
        policy.write_text(
            RAMP_POLICY.format(rollout="fleet", interval="1s") + SINK.format(url=receiver.url)
        )
        url = etcd.url(prefix)
        a = FleetController("ctrl-a", policy, url, tmp_path)
        b = FleetController("ctrl-b", policy, url, tmp_path)
        metrics_address = f"127.0.0.1:{free_port()}"
        b.process.argv += ["--metrics", metrics_address]
        store = open_store()
        try:
            a.start()
            wait_until(lambda: leader_of(store) == "ctrl-a", "ctrl-a to lead", 15, a.process)
            b.start()
            b.wait_logged("standing by; leader of")
            a.call("Start", actor="alice")
            wait_until(lambda: current(store).stage >= 3, "stage 3", 15, a.process)
            a.stop()  # SIGTERM: resigns, then drains its notifications
            wait_until(lambda: leader_of(store) == "ctrl-b", "ctrl-b to lead", 15, b.process)
            target = current(store).stage + 2
            wait_until(lambda: current(store).stage >= target, f"stage {target}", 15, b.process)
            wait_until(
                lambda: (
                    current(store).revision
                    <= max((r.json()["revision"] for r in receiver.delivered()), default=0)
                ),
                "the last revision delivered",
                15,
            )
            with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=5) as response:
                exposition = response.read().decode()
        finally:
            a.stop()
            b.stop()
    audit = store.audit(100)
    bodies = [r.json() for r in receiver.delivered()]
    for got in receiver.delivered():
        assert verify_signature(KEY.encode(), got.headers["x-tts-canary-signature"], got.body)
    transitions = [b for b in bodies if b["kind"] != "leadership"]
    announced = [b["revision"] for b in transitions]
    assert sorted(announced) == [e["revision"] for e in audit]  # each revision exactly once
    writers = {e["revision"]: e for e in audit}
    for body in transitions:
        assert body["to_share"] == writers[body["revision"]]["to_share"]
    by_replica = {b["revision"]: b["controller"].split(":")[0] for b in transitions}
    handover = min(r for r, who in by_replica.items() if who.startswith("ctrl-b"))
    assert all(who.startswith("ctrl-a") for r, who in by_replica.items() if r < handover)
    assert all(who.startswith("ctrl-b") for r, who in by_replica.items() if r >= handover)
    leaders = [b["actor"] for b in bodies if b["kind"] == "leadership"]
    assert leaders == ["ctrl-a (term 1)", "ctrl-b (term 1)"]
    delivered_by_b = len([b for b in bodies if b["controller"].startswith("ctrl-b")])
    line = 'tts_canary_notifications_total{outcome="delivered",sink="ops"}'
    assert f"{line} {float(delivered_by_b)}" in exposition
    exposed = {n for n in promql.exposed_names(exposition) if n.startswith("tts_canary_")}
    declared = {n for n in metrics.NAMES if n in exposed or f"{n}_bucket" in exposed}
    assert declared == set(metrics.NAMES)  # every declared series is served by --metrics
