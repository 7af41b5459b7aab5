"""The resource guards of examples/policy-resources.yaml against a real Prometheus scraping a
stand-in DCGM / cAdvisor exporter: each guard reads its own deployment's worst series in the
exporter's units, ignores v1, the pause container, pod totals and a GPU of no pod, and a v2
GPU filling up rolls a controller back. (Through Envoy: tests/e2e/rollout/
test_rollout_resource_guards.py.)"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.judge import Reading, judge
from extproc.rollout.guards.signals import PrometheusSource
from extproc.rollout.policy import Guard, load_policy
from extproc.rollout.state import Phase, Verdict
from extproc.rollout.stores.state_store import FileStateStore
from extproc.stack.processes import wait_until
from tests.support.prometheus import exporter_job, running_prometheus
from tests.support.resource_exporter import MIB, PODS, ResourceExporter, Usage

ROOT = Path(__file__).resolve().parents[2]
POLICY = load_policy(ROOT / "examples/policy-resources.yaml")
GUARDS = {g.name: g for g in POLICY.guards}


@pytest.fixture(scope="module")
def exporter() -> Iterator[ResourceExporter]:
    with ResourceExporter() as e:
        yield e


@pytest.fixture(scope="module")
def prometheus(
    exporter: ResourceExporter, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    run_dir = tmp_path_factory.mktemp("prometheus")
    with running_prometheus(run_dir, [exporter_job("resources", exporter.address)]) as url:
        yield url


@pytest.fixture
def usage(exporter: ResourceExporter) -> Iterator[ResourceExporter]:
    """The exporter, back to the default usage for both deployments after the test."""
    yield exporter
    for deployment in ("v1", "v2"):
        exporter.set(deployment, **_fields(Usage()))


def _fields(u: Usage) -> dict[str, float]:
    return {name: getattr(u, name) for name in Usage.__dataclass_fields__}


def read(url: str, guard: Guard) -> Reading:
    return PrometheusSource(url, [guard.query]).query(guard.query)


def settle(url: str, guard: Guard, expected: float, rel: float = 1e-9) -> Reading:
    """Wait until Prometheus has scraped the exporter's new values for ``guard``."""
    wait_until(
        lambda: read(url, guard).value == pytest.approx(expected, rel=rel),
        f"{guard.name} to read {expected}",
        20,
    )
    return read(url, guard)


def test_each_guard_reads_its_deployment_in_the_exporters_units(
    prometheus: str, usage: ResourceExporter
) -> None:
    """v1 is close to every threshold and GPU 2 (no pod) is 98 % full: neither may count.
    (v2's GPU utilisation and CPU stay at their defaults: those guards average over 1m.)"""
    usage.set("v1", gpu_used_mib=20_000, gpu_util=90, cpu_cores=3.9, memory_bytes=15 * 1024 * MIB)
    usage.set("v2", gpu_used_mib=12_000, memory_bytes=5 * 1024 * MIB)
    reading = settle(prometheus, GUARDS["v2-gpu-memory"], 0.5)
    assert (reading.samples, judge(GUARDS["v2-gpu-memory"], reading).verdict) == (1, Verdict.PASS)
    assert settle(prometheus, GUARDS["v2-gpu-memory-over-v1"], -8_000).samples == 1
    assert settle(prometheus, GUARDS["v2-gpu-util"], Usage().gpu_util).samples == 1
    assert settle(prometheus, GUARDS["v2-memory"], 5 * 1024 * MIB).samples == 1  # not the pod's
    # rate() over 1m of a series younger than a minute extrapolates only half a scrape
    # interval past its samples, so it under-reads at first and climbs with each scrape:
    # compare, at one evaluation instant, with v2's container series and with v1's (3.9 cores).
    guard = GUARDS["v2-cpu"]
    own = 'max(rate(container_cpu_usage_seconds_total{{pod="{}", container="tts"}}[1m]))'
    wait_until(lambda: read(prometheus, guard).value is not None, "a cpu rate", 20)
    assert read(prometheus, guard).samples == 1
    source = PrometheusSource(prometheus, [])
    assert source.query(f"({guard.query}) - {own.format(PODS['v2'])}").value == 0
    v1_minus_v2 = source.query(f"{own.format(PODS['v1'])} - ({guard.query})").value
    assert v1_minus_v2 is not None and v1_minus_v2 > 0
    for name in GUARDS:
        assert judge(GUARDS[name], read(prometheus, GUARDS[name])).verdict is Verdict.PASS, name


def test_the_gauge_guards_breach_on_their_own_resource(
    prometheus: str, usage: ResourceExporter
) -> None:
    usage.set("v2", gpu_used_mib=22_500, memory_bytes=15 * 1024 * MIB)
    expected = {
        "v2-gpu-memory": 22_500 / 24_000,
        "v2-gpu-memory-over-v1": 22_500 - 8_000,
        "v2-memory": 15 * 1024 * MIB,
    }
    for name, value in expected.items():
        reading = settle(prometheus, GUARDS[name], value)
        assert judge(GUARDS[name], reading).verdict is Verdict.FAIL, name


def test_no_v2_pod_holds(prometheus: str) -> None:
    guard = Guard(
        "q",
        "promql",
        "v2",
        0.9,
        60.0,
        1,
        query=GUARDS["v2-gpu-memory"].query.replace("tts-v2-", "tts-v3-"),
    )
    reading = read(prometheus, guard)
    assert (reading.value, judge(guard, reading).verdict) == (None, Verdict.HOLD)


def test_a_controller_rolls_back_when_v2_gpu_memory_climbs(
    prometheus: str, usage: ResourceExporter, tmp_path: Path
) -> None:
    source = PrometheusSource(prometheus, [g.query for g in POLICY.guards])
    store = FileStateStore(tmp_path / "state.json")
    controller = Controller(POLICY, store, {"promql": source}, clock=FakeClock())
    controller.apply("start", "op")
    settle(prometheus, GUARDS["v2-gpu-memory"], 8_000 / 24_000)
    asyncio.run(controller.check())
    assert store.read() is not None and store.read().phase is Phase.RAMPING  # type: ignore[union-attr]
    usage.set("v2", gpu_used_mib=23_000)
    settle(prometheus, GUARDS["v2-gpu-memory"], 23_000 / 24_000)
    asyncio.run(controller.check())
    state = store.read()
    assert state is not None and state.phase is Phase.ROLLED_BACK and state.share == 0
    last = store.audit(1)[0]
    assert last["reason"].startswith("guard breach: ") and "v2-gpu-memory" in last["reason"]
    assert last["guards"]["v2-gpu-memory"]["verdict"] == "fail"
    assert last["guards"]["v2-gpu-memory"]["value"] == pytest.approx(23_000 / 24_000)
