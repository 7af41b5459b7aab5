"""The etcd state watch's metrics (extproc/sidecar/watch_metrics.py), read at scrape time."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from extproc.rollout.stores.etcd_faults import Fault
from extproc.sidecar.watch_metrics import CLASSES, StateWatchCollector


@dataclass
class FakeWatch:
    """What the collector reads of a StateWatch."""

    connected: bool = False
    faults: Counter[str] = field(default_factory=Counter)
    rejected: int = 0


def scrape(watch: FakeWatch) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(StateWatchCollector(watch))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if not s.name.endswith("_created")
    }


def test_every_fault_class_is_exported_from_the_start_at_zero() -> None:
    samples = scrape(FakeWatch())
    faults = {
        dict(labels)["class"]: value
        for (name, labels), value in samples.items()
        if name == "tts_canary_state_watch_faults_total"
    }
    assert faults == dict.fromkeys(CLASSES, 0.0)
    assert set(CLASSES) == {f.value for f in Fault} | {"unexpected"}
    assert samples[("tts_canary_state_watch_connected", ())] == 0.0  # etcd never answered
    assert samples[("tts_canary_state_watch_rejected_total", ())] == 0.0


def test_counts_follow_the_watch_at_each_scrape() -> None:
    watch = FakeWatch(connected=True)
    assert scrape(watch)[("tts_canary_state_watch_connected", ())] == 1.0
    watch.connected = False
    watch.faults.update({"no_leader": 3, "unreachable": 1, "unexpected": 2})
    watch.rejected = 1
    samples = scrape(watch)
    assert samples[("tts_canary_state_watch_connected", ())] == 0.0
    assert samples[("tts_canary_state_watch_faults_total", (("class", "no_leader"),))] == 3.0
    assert samples[("tts_canary_state_watch_faults_total", (("class", "unreachable"),))] == 1.0
    assert samples[("tts_canary_state_watch_faults_total", (("class", "unexpected"),))] == 2.0
    assert samples[("tts_canary_state_watch_faults_total", (("class", "timeout"),))] == 0.0
    assert samples[("tts_canary_state_watch_rejected_total", ())] == 1.0


def test_a_class_the_watch_never_names_is_not_invented() -> None:
    watch = FakeWatch()
    watch.faults["something_else"] = 5  # not a class: not exported (bounded label values)
    samples = scrape(watch)
    classes = {dict(labels)["class"] for (name, labels) in samples if "faults" in name}
    assert classes == set(CLASSES)
