"""The dry-run benchmark runs end to end in a small size (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys

from extproc.stack.stack import REPO_ROOT


def test_diff_bench_quick_mode() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "loadtest.diff_bench", "--users", "100000", "--rounds", "1",
         "--reference", "5000"],
        capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    figures = json.loads(done.stdout)
    assert figures["users"] == 100_000
    for case in ("same_salt", "new_salt"):
        assert figures[case]["users_per_s"] > 0 and figures[case]["moved_up"] > 0
    # A 5-point wider default share moves about 5 % of the users outside forced rules up.
    assert 1_000 < figures["same_salt"]["moved_up"] < 5_000
    assert figures["scalar_decide_users_per_s"] > 0 and figures["speedup_same_salt"] > 0
