"""The Envoy-tracer comparison of the load-test report: same-round ratios, then medians."""

from __future__ import annotations

from typing import Any

from loadtest.harness import report


def round_of(n: int, **setups: tuple[float, float, float | None]) -> dict[str, Any]:
    """A round whose setups have (saturation req/s, Envoy us/req, processor us/req)."""
    figures = {}
    for name, (rps, envoy, processor) in setups.items():
        figures[name] = {"saturation.rps": rps, "saturation.envoy_cpu_us_per_req": envoy}
        if processor is not None:
            figures[name]["saturation.processor_cpu_us_per_req"] = processor
    return {"round": n, "setups": figures}


ROUNDS = [
    round_of(1, native=(10000, 50, None), ntraced1=(9000, 55, None),
             sidecar=(5000, 100, 40), etraced1=(4000, 120, 50)),
    round_of(2, native=(12000, 48, None), ntraced1=(12000, 50, None),
             sidecar=(6000, 96, 36), etraced1=(5400, 110, 45)),
    round_of(3, native=(11000, 49, None), ntraced1=(10450, 52, None),
             sidecar=(5500, 98, 38), etraced1=(5225, 108, 44)),
]  # fmt: skip


def test_losses_ratios_and_added_envoy_cpu_are_paired_within_rounds() -> None:
    present = {"native", "ntraced1", "sidecar", "etraced1"}
    comp = report.envoy_tracing_cost(ROUNDS, present)
    # etraced1 vs sidecar: losses 20, 10, 5 % -> median 10; CPU 1.25, 1.25, 1.158 -> 1.25
    assert round(comp["etracing.etraced1.loss_pct"], 6) == 10.0
    assert round(comp["etracing.etraced1.cpu_ratio"], 6) == 1.25
    assert comp["etracing.etraced1.envoy_added_us"] == 14  # 20, 14, 10
    assert round(comp["etracing.etraced1.rps/native"], 4) == 0.45  # 0.4, 0.45, 0.475
    # ntraced1 vs native: losses 10, 0, 5 % -> 5; Envoy added 5, 2, 3 -> 3
    assert round(comp["etracing.ntraced1.loss_pct"], 6) == 5.0
    assert comp["etracing.ntraced1.envoy_added_us"] == 3
    assert "etracing.ntraced.loss_pct" not in comp  # not run: not reported


def test_the_table_lists_only_the_setups_that_ran() -> None:
    comp = report.envoy_tracing_cost(ROUNDS, {"native", "ntraced1", "sidecar", "etraced1"})
    lines = report.envoy_tracer_table(comp)
    rows = [line for line in lines[2:]]
    assert len(rows) == 2
    assert rows[0].startswith("| etraced1 (Envoy tracer 1 %) | sidecar | 10.0 | 1.25 | 14.0")
    assert rows[1].startswith("| ntraced1 (Envoy tracer 1 %, no processor) | native | 5.0 | n/a")
    assert report.envoy_tracer_table({}) == []
