"""The live-sampling setups of the harness (only when asked for) and what they need.

- ``premode`` (in setups.py): the sidecar with sampling off on the Envoy config of before live
  sampling (no ``allow_mode_override``, no forwarded namespace): the reference for "sampling
  off leaves the hot path unchanged".
- ``sampled``: 1 % per cohort, every other live setting at its default (the rate cap
  ``EXTPROC_SAMPLE_MAX_PER_SECOND=auto``): the configuration as shipped.
- ``sampled-nocap``: 1 % per cohort with no rate cap (``inf``): every drawn request the
  scorer has room for is sampled, so the window shows the cost per sampled request.
- ``sampled-apart``: ``sampled-nocap`` with the scoring child moved to the load CPUs once it
  is warm, as if it ran in a container of its own with its own CPU: the data path's share.
- ``sampled-all``: every request drawn, no cap (the added latency of a sampled request;
  the scorer's queue still admits only what it has room for).

Each starts measuring only once the scoring child has loaded its models (the sidecar's
``tts_quality_live_scorer_ready`` gauge): the warm-up is seconds of CPU once per start, niced,
and on the pinned CPU it would otherwise spill into the measured windows. Each window records
the sidecar's live counters (sampled, skipped, scored, dropped) from its ``/metrics``.
"""

from __future__ import annotations

import os
import urllib.request

from loadtest.harness import procstat

#: Extra sidecar environment per live setup.
LIVE_SETUPS: dict[str, dict[str, str]] = {
    "sampled": {"EXTPROC_SAMPLE_RATE": "0.01"},
    "sampled-nocap": {"EXTPROC_SAMPLE_RATE": "0.01", "EXTPROC_SAMPLE_MAX_PER_SECOND": "inf"},
    "sampled-apart": {"EXTPROC_SAMPLE_RATE": "0.01", "EXTPROC_SAMPLE_MAX_PER_SECOND": "inf"},
    "sampled-all": {"EXTPROC_SAMPLE_RATE": "1", "EXTPROC_SAMPLE_MAX_PER_SECOND": "inf"},
}
#: Live setups whose scoring child runs on the load CPUs instead of the sidecar's.
SCORER_APART = frozenset({"sampled-apart"})
PREFIX = "tts_quality_live_"
#: Counters summed over their labels into a window's figures (``live_<name>``).
COUNTERS = ("sampled_total", "skipped_total", "scored_total", "dropped_total")
READY_TIMEOUT = 120.0  # the scorer's warm-up: models loaded, niced


def scrape(metrics_address: str) -> dict[str, float]:
    """The live counters of the sidecar at ``host:port`` (see :func:`live_counters`); {} if the
    endpoint does not answer."""
    try:
        with urllib.request.urlopen(f"http://{metrics_address}/metrics", timeout=3) as answer:
            return live_counters(answer.read().decode())
    except OSError:
        return {}


def live_counters(exposition: str) -> dict[str, float]:
    """From Prometheus text: each live counter summed over its labels (``sampled_total``, ...)
    and the ``scorer_ready`` gauge."""
    out: dict[str, float] = {}
    for line in exposition.splitlines():
        if not line.startswith(PREFIX):
            continue
        name, _, value = line.partition(" ")
        short = name.split("{", 1)[0].removeprefix(PREFIX)
        if short in COUNTERS or short == "scorer_ready":
            out[short] = out.get(short, 0.0) + float(value.split()[0])
    return out


def scorer_ready(metrics_address: str) -> bool:
    return scrape(metrics_address).get("scorer_ready") == 1.0


def move_scorer(sidecar_pid: int, cpus: frozenset[int] | None) -> list[int]:
    """Pin every process of the sidecar's group but the sidecar itself (the scoring child)
    to ``cpus``; their pids. Nothing happens without a CPU set."""
    if cpus is None:
        return []
    moved = [pid for pid in procstat.group_pids(sidecar_pid) if pid != sidecar_pid]
    for pid in moved:
        os.sched_setaffinity(pid, cpus)
    return moved


def window_figures(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """``live_<counter>``: how much each live counter grew over a window."""
    return {f"live_{name.removesuffix('_total')}": after.get(name, 0.0) - before.get(name, 0.0)
            for name in COUNTERS if name in after}  # fmt: skip
