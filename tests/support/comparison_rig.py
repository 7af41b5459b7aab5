"""A controller with compare guards over a fake clock and a fake Envoy (log-normal
latencies around 250 ms for both cohorts, v2's scaled), shared by the compare-guard tests."""

from __future__ import annotations

import asyncio
import datetime as dt
import random
from pathlib import Path

from extproc.core.bucket import BUCKETS
from extproc.rollout.clock import FakeClock
from extproc.rollout.controller import Controller
from extproc.rollout.guards.signals import EnvoyStatsSource
from extproc.rollout.policy import parse_policy
from extproc.rollout.state import Phase
from extproc.rollout.stores.state_store import FileStateStore
from tests.support.fake_envoy_stats import FakeEnvoyStats

PCT = BUCKETS // 100
NOON = dt.datetime.fromisoformat("2026-11-25T12:00:00+01:00")
POLICY = """policy:
  rollout: gpt-sovits-v2
  initial_share: 10%
  step: 10%
  step_interval: {step}
  guards:
    - {{name: v2-p95, signal: latency_p95, cohort: v2, threshold: 800ms, window: 10s,
       min_samples: 50}}
    - {{name: v2-vs-v1, compare: {{metric: latency, margin: 10%, alpha: 1%}}, min_samples: 100}}
    - {{name: errors-vs-v1, compare: {{metric: error_rate, margin: 50%}}, min_samples: 200}}
"""


class Rig:
    def __init__(self, tmp_path: Path, step: str = "2h") -> None:
        self.policy = parse_policy("policy.yaml", POLICY.format(step=step).encode())
        self.clock = FakeClock(NOON)
        self.envoy = FakeEnvoyStats()
        self.store = FileStateStore(tmp_path / "state.json")
        source = EnvoyStatsSource("http://127.0.0.1:9901", self.clock, 10.0, fetch=self.envoy.fetch)
        self.controller = Controller(self.policy, self.store, {"envoy": source}, clock=self.clock)
        self.random = random.Random(15)

    def traffic(
        self, seconds: int, *, v2_scale: float = 1.0, per_second: int = 20, every: int = 1
    ) -> None:
        """Log-normal latencies around 250 ms for both cohorts (v2's scaled), one check
        every ``every`` seconds."""
        for second in range(1, seconds + 1):
            for cluster, scale in (("tts_v1", 1.0), ("tts_v2", v2_scale)):
                for _ in range(per_second):
                    ms = 250.0 * scale * self.random.lognormvariate(0.0, 0.3)
                    self.envoy.serve(cluster, 1, latency_ms=ms)
            self.clock.advance(1)
            if second % every == 0:
                asyncio.run(self.controller.check())

    def phase(self) -> Phase:
        state = self.store.read()
        assert state is not None
        return state.phase
