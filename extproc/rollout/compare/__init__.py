"""Comparing v2 against v1, pure: always-valid sequential tests on per-cohort counts.

- :mod:`.mixture`: the normal-mixture sequential probability ratio (mSPRT), one-sided test
  and two-sided confidence sequence, on any asymptotically normal statistic;
- :mod:`.histogram`: Mann-Whitney on histogram buckets (latency), v1 scaled by a margin;
- :mod:`.rates`: two proportions (5xx rates), v1's rate scaled by a margin (the estimate);
- :mod:`.events`: the exact always-valid test on which cohort each error came from;
- :mod:`.sequential`: one look of a test (effect, interval, anytime p-value, e-value,
  verdict) and the running state between looks.

No I/O, no clock, no third-party imports (only :mod:`math`); see docs/comparison-guards.md.
"""
