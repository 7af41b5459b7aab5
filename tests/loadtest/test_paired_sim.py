"""The paired-probe bench (compare_sim --paired): its vectorized mixture path equals the
shipped pure one, and a small seeded run shows what the full one does (A/A at the margin:
sequential at most about alpha, peeking more; a 0.6 MOS drop found). Bounded: a second."""

from __future__ import annotations

import numpy as np
import pytest

from extproc.rollout.compare import paired
from loadtest.compare.paired_sim import PairedScenario, Probing, draw, fail_rounds, log_ratio_paths


@pytest.mark.parametrize("seed", range(3))
def test_vectorized_paths_equal_the_core(seed: int) -> None:
    diffs = draw(PairedScenario("x", drop=0.3, margin=0.2), Probing(), 4, seed)[:, :120]
    paths = log_ratio_paths(diffs, 0.2, 0.2, 4.0)
    for row, path in zip(diffs, paths, strict=True):
        core = paired.log_ratio_path(list(row), 0.2, 0.2, 4.0)
        assert path == pytest.approx(core, rel=1e-7, abs=1e-7)


def test_a_small_run_shows_valid_sequential_and_inflated_peeking() -> None:
    probing, stages = Probing(), 400
    null = PairedScenario("at the margin", drop=0.2, margin=0.2)
    fails = fail_rounds(draw(null, probing, stages, 7), null, probing, 0.01)
    sequential = float((fails["sequential"] >= 0).mean())
    peeking = float((fails["peeking"] >= 0).mean())
    assert sequential <= 0.025 and peeking > 2 * max(sequential, 0.01)
    worse = PairedScenario("-0.6", drop=0.6, margin=0.2)
    found = fail_rounds(draw(worse, probing, 50, 8), worse, probing, 0.01)["sequential"]
    assert (found >= 0).all() and np.median(found) >= probing.min_samples - 1
