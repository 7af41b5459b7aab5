"""Delivery to a real HTTP receiver on loopback: signed webhooks that verify, retries with
back-off on 5xx and on a dead or hung receiver (bounded), no retry on a 4xx, a bounded
queue, and a controller whose rollback is written while the receiver hangs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.notify import events
from extproc.rollout.notify.notifier import Notifier
from extproc.rollout.notify.sinks import build_sinks
from extproc.rollout.policy import parse_policy
from extproc.rollout.state import Phase
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack.processes import free_port, wait_until
from tests.support.notify_receiver import Receiver, verify_signature

KEY = "a-test-hmac-key-of-32-characters"
FAST = (0.01, 0.05)  # back-off for tests: the schedule, not the clock, is under test


def policy_text(url: str, kind: str = "webhook", extra: str = "") -> bytes:
    secret = "\n      secret: {env: TTS_TEST_KEY}" if kind == "webhook" else ""
    return f"""policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  notify:
    - name: sink
      type: {kind}
      url: {url}{secret}{extra}
""".encode()


def notifier(url: str, extra: str = "", capacity: int = 100, kind: str = "webhook") -> Notifier:
    specs = parse_policy("policy.yaml", policy_text(url, kind, extra)).notify
    sinks = build_sinks(specs, {"TTS_TEST_KEY": KEY})
    return Notifier(sinks, identity="test:1", capacity=capacity, backoff=FAST)


def event(revision: int = 4, kind: str = "rollback") -> events.Event:
    return events.Event(
        kind=kind,
        rollout="gpt-sovits-v2",
        revision=revision,
        at=1_765_000_000.0,
        from_phase="ramping",
        to_phase="rolled_back" if kind == "rollback" else "ramping",
        from_share="20%",
        to_share="0%",
        stage=2,
        actor="controller",
        reason="guard breach: v2-p95",
        guards={"v2-p95": {"verdict": "fail", "value": 1.2, "threshold": 0.8, "samples": 50}},
    )


def outcome(n: Notifier, name: str) -> float:
    return n.metrics.value("tts_canary_notifications_total", sink="sink", outcome=name)


def dead_url() -> str:
    """A loopback URL where nothing listens (the port was just free)."""
    return f"http://127.0.0.1:{free_port()}/hook"


@contextlib.contextmanager
def running(n: Notifier, close_timeout: float = 5.0) -> Iterator[Notifier]:
    with n.running(close_timeout):
        yield n


def test_a_signed_webhook_arrives_and_verifies_at_the_receiver() -> None:
    with Receiver() as receiver, running(notifier(receiver.url + "/hook")) as n:
        assert n.publish(event())
        wait_until(lambda: len(receiver.delivered()) == 1, "the delivery", 10)
    (got,) = receiver.received
    assert got.path == "/hook" and got.headers["content-type"] == "application/json"
    assert verify_signature(KEY.encode(), got.headers["x-tts-canary-signature"], got.body)
    assert not verify_signature(b"wrong key", got.headers["x-tts-canary-signature"], got.body)
    assert got.headers["x-tts-canary-delivery"] == "gpt-sovits-v2/r4/rollback"
    body = got.json()
    assert (body["kind"], body["revision"], body["to_phase"]) == ("rollback", 4, "rolled_back")
    assert body["guards"]["v2-p95"]["value"] == 1.2
    assert outcome(n, "delivered") == 1
    count = n.metrics.value("tts_canary_notification_delay_seconds_count", sink="sink")
    assert count == 1


def test_the_same_revision_is_announced_once() -> None:
    with Receiver() as receiver, running(notifier(receiver.url)) as n:
        assert n.publish(event()) and not n.publish(event())
        assert n.publish(event(revision=5, kind="resume"))
        wait_until(lambda: len(receiver.delivered()) == 2, "two deliveries", 10)
    assert [r.json()["revision"] for r in receiver.received] == [4, 5]
    kinds = {
        k: n.metrics.value("tts_canary_notification_events_total", kind=k)
        for k in ("rollback", "resume")
    }
    assert kinds == {"rollback": 1, "resume": 1}


def test_5xx_answers_are_retried_with_backoff_until_delivered() -> None:
    with Receiver(statuses=(503, 500)) as receiver, running(notifier(receiver.url)) as n:
        n.publish(event())
        wait_until(lambda: len(receiver.delivered()) == 1, "the third attempt", 10)
    assert [r.status for r in receiver.received] == [503, 500, 200]
    signatures = {r.headers["x-tts-canary-signature"] for r in receiver.received}
    assert all(verify_signature(KEY.encode(), s, receiver.received[0].body) for s in signatures)
    assert n.metrics.value("tts_canary_notification_retries_total", sink="sink") == 2
    assert outcome(n, "delivered") == 1 and outcome(n, "failed") == 0


def test_a_4xx_is_rejected_at_once_and_not_retried() -> None:
    with Receiver(statuses=(401,)) as receiver, running(notifier(receiver.url)) as n:
        n.publish(event())
        wait_until(lambda: outcome(n, "rejected") == 1, "the rejection", 10)
    assert receiver.attempts == 1 and outcome(n, "delivered") == 0


def test_a_dead_receiver_costs_a_bounded_number_of_attempts() -> None:
    with running(notifier(dead_url(), "\n      attempts: 3")) as n:
        n.publish(event())
        wait_until(lambda: outcome(n, "failed") == 1, "giving up", 10)
    assert n.metrics.value("tts_canary_notification_retries_total", sink="sink") == 2


def test_a_hung_receiver_times_out_and_is_retried() -> None:
    with Receiver() as receiver:
        n = notifier(receiver.url, "\n      timeout: 200ms\n      attempts: 20")
        with running(n):
            receiver.hold()
            n.publish(event())
            wait_until(lambda: receiver.attempts >= 2, "a retry after a timeout", 10)
            receiver.release()
            wait_until(lambda: len(receiver.delivered()) >= 1, "the delivery", 10)
    assert n.metrics.value("tts_canary_notification_retries_total", sink="sink") >= 1
    assert outcome(n, "delivered") == 1


def test_a_full_queue_drops_the_oldest_events_and_counts_them() -> None:
    with Receiver() as receiver:
        n = notifier(receiver.url, capacity=3)
        with running(n):
            receiver.hold()
            n.publish(event(revision=1, kind="start"))
            wait_until(lambda: receiver.attempts == 1, "the first event in flight", 10)
            for revision in range(2, 11):
                n.publish(event(revision=revision, kind="step"))
            assert outcome(n, "dropped") == 6  # 9 more, 3 kept
            depth = n.metrics.value("tts_canary_notification_queue_depth", sink="sink")
            assert depth == 3
            receiver.release()
            wait_until(lambda: len(receiver.delivered()) == 4, "the kept events", 10)
    assert [r.json()["revision"] for r in receiver.received] == [1, 8, 9, 10]


def test_close_gives_up_on_a_dead_receiver_at_its_deadline() -> None:
    n = notifier(dead_url(), "\n      attempts: 20")
    n.start()
    n.publish(event())
    wait_until(
        lambda: n.metrics.value("tts_canary_notification_retries_total", sink="sink") >= 1,
        "a first retry",
        10,
    )
    n.close(timeout=0.2)
    assert outcome(n, "abandoned") == 1 and outcome(n, "failed") == 0
    assert not any(w._thread.is_alive() for w in n.workers)


def test_a_rollback_is_written_while_the_receiver_hangs(tmp_path: Path) -> None:
    """The receiver answers nothing until released; the controller's start and rollback
    both complete (state written) meanwhile, and both notifications follow afterwards."""
    with Receiver() as receiver:
        n = notifier(receiver.url, "\n      timeout: 10s")
        the_policy = parse_policy("policy.yaml", policy_text(receiver.url))
        store = FileStateStore(tmp_path / "state.json")
        controller = Controller(the_policy, store, {}, clock=FakeClock(), notifier=n)
        with running(n):
            receiver.hold()
            controller.apply("start", "alice")
            wait_until(lambda: receiver.attempts == 1, "the start notification in flight", 10)
            state = controller.apply("rollback", "bob")
            assert state.phase is Phase.ROLLED_BACK and receiver.received == []
            receiver.release()
            wait_until(lambda: len(receiver.delivered()) == 2, "both notifications", 10)
    bodies = [r.json() for r in receiver.received]
    assert [(b["kind"], b["actor"], b["revision"]) for b in bodies] == [
        ("start", "alice", 1),
        ("rollback", "bob", 2),
    ]
    assert bodies[1]["controller"] == "test:1"


def test_a_slack_compatible_sink_posts_text_and_blocks_to_its_secret_url() -> None:
    text = b"""policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  notify:
    - {name: sink, type: slack, url: {env: TTS_TEST_SLACK}}
"""
    specs = parse_policy("policy.yaml", text).notify
    with Receiver() as receiver:
        sinks = build_sinks(specs, {"TTS_TEST_SLACK": receiver.url + "/services/T0/B0/x"})
        with running(Notifier(sinks, backoff=FAST)) as n:
            n.publish(event())
            wait_until(lambda: len(receiver.delivered()) == 1, "the Slack message", 10)
    (got,) = receiver.received
    body = got.json()
    assert got.path == "/services/T0/B0/x" and "x-tts-canary-signature" not in got.headers
    assert body["text"].startswith(":rotating_light: gpt-sovits-v2 ROLLED BACK: 20% → 0%")
    assert [b["type"] for b in body["blocks"]] == ["header", "section", "section", "context"]
