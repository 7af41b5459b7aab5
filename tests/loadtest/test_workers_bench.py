"""``python -m loadtest.workers`` in a tiny run: the figures exist and every call succeeded.

No timing assertion: decisions/s and the 2/1 ratio depend on the machine.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.workers import grpc_body

REPO = Path(__file__).resolve().parents[2]
FIGURES = {"workers", "calls", "decided", "clean", "decisions_per_s",
           "sidecar_cpu_us_per_decision", "sidecar_cpu_util", "h2load_cpu_util",
           "share_by_worker", "wall_s"}  # fmt: skip


def test_the_body_is_one_grpc_framed_processing_request() -> None:
    body = grpc_body("u-1", "eu-west", "ios-17")
    assert body[0] == 0 and int.from_bytes(body[1:5], "big") == len(body) - 5
    assert b"x-user-id" in body and b"u-1" in body


@pytest.mark.timeout(240)
def test_a_tiny_run_has_every_figure_and_only_clean_calls(tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "loadtest.workers", "--rounds", "1", "--duration", "0.5",
            "--connections", "4", "--streams", "2", "--clients", "2", "--max-calls", "6000",
            "--out", str(tmp_path)]  # fmt: skip
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=200)
    assert done.returncode == 0, done.stderr[-4000:]
    result = json.loads((tmp_path / "workers.json").read_text())
    (only_round,) = result["rounds"]
    assert [run["workers"] for run in only_round] == [1, 2]
    for run in only_round:
        assert set(run) == FIGURES
        assert run["clean"] and run["calls"] == run["decided"] > 0
        shares = run["share_by_worker"]
        assert set(shares) <= {str(i) for i in range(run["workers"])}
        assert math.isclose(sum(shares.values()), 1.0)
    summary = result["summary"]
    assert summary["1"]["all_clean"] and summary["2"]["all_clean"]
    assert summary["ratio_2_to_1"] > 0
    assert (tmp_path / "workers.md").read_text().startswith("# Sidecar workers:")
