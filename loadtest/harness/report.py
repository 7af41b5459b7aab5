"""Medians, same-run comparisons, the DESIGN targets, and the markdown report.

Input: the run's rounds, each ``{"round": n, "order": [...], "setups": {setup: figures}}``
where ``figures`` is flat: ``"<window>.<figure>"`` (windows ``saturation`` and
``rate_<R>``) plus ``processor_rss_mb`` / ``envoy_rss_mb``.

Comparisons are computed inside each round (setups of one round ran back to back) and then
the median over rounds is taken, so slow drift of the machine cancels out. Medians of the raw
figures are given beside them.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Figures = Mapping[str, float]
Round = Mapping[str, Any]
#: Column / row order of the setups in the tables.
SETUP_ORDER = (
    "native", "naive", "sidecar", "traced", "bare", "etraced", "etraced1", "full", "uds",
    "ntraced", "ntraced1",
)  # fmt: skip


def median(values: Iterable[float | None]) -> float:
    """Median of the finite values; NaN when there is none."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return statistics.median(finite) if finite else float("nan")


def setups_of(rounds: Sequence[Round]) -> list[str]:
    names: list[str] = []
    for rnd in rounds:
        names += [s for s in rnd["setups"] if s not in names]
    return names


def medians(rounds: Sequence[Round]) -> dict[str, dict[str, float]]:
    """For each setup, the median over rounds of every figure."""
    out: dict[str, dict[str, float]] = {}
    for setup in setups_of(rounds):
        per_round = [rnd["setups"][setup] for rnd in rounds if setup in rnd["setups"]]
        keys = sorted({k for figures in per_round for k in figures})
        out[setup] = {k: median(f.get(k) for f in per_round) for k in keys}
    return out


def _paired(rounds: Sequence[Round], fn: Callable[[Mapping[str, Figures]], float]) -> float:
    values = []
    for rnd in rounds:
        try:
            values.append(fn(rnd["setups"]))
        except (KeyError, ZeroDivisionError):
            continue
    return median(values)


def rate_windows(rounds: Sequence[Round]) -> list[str]:
    keys = {k.split(".")[0] for rnd in rounds for f in rnd["setups"].values() for k in f}
    return sorted((k for k in keys if k.startswith("rate_")), key=lambda k: int(k[5:]))


def comparison(rounds: Sequence[Round]) -> dict[str, float]:
    """Same-round ratios and differences, median over rounds (absent setups: skipped)."""
    present = set(setups_of(rounds))
    out: dict[str, float] = {}

    def ratio(key: str, a: str, b: str) -> None:
        if {a, b} <= present:
            out[f"{key}.{a}/{b}"] = _paired(rounds, lambda s: s[a][key] / s[b][key])

    def added(key: str, a: str) -> None:
        if {a, "native"} <= present:
            out[f"{key}.{a}-native"] = _paired(rounds, lambda s: s[a][key] - s["native"][key])

    for other in ("native", "naive"):
        ratio("saturation.rps", "sidecar", other)
    ratio("saturation.rps", "naive", "native")
    ratio("saturation.processor_cpu_us_per_req", "sidecar", "naive")
    ratio("saturation.envoy_cpu_us_per_req", "sidecar", "native")
    for window in rate_windows(rounds):
        ratio(f"{window}.processor_cpu_us_per_req", "sidecar", "naive")
        for setup in ("naive", "sidecar", "traced"):
            for figure in ("p50_ms", "p99_ms", "p999_ms"):
                added(f"{window}.{figure}", setup)
    out.update(tracing_cost(rounds, present))
    out.update(envoy_tracing_cost(rounds, present))
    return out


def envoy_tracing_cost(rounds: Sequence[Round], present: set[str]) -> dict[str, float]:
    """Envoy's tracer on (``etraced`` 100 %, ``etraced1`` 1 %, ``full`` = Envoy 100 % +
    decision spans) against ``sidecar`` (both tracers off), same round: processor CPU per
    decision as a ratio, saturation loss in %, and saturation against naive and native."""
    out: dict[str, float] = {}
    rps, cpu = "saturation.rps", "saturation.processor_cpu_us_per_req"
    envoy_cpu = "saturation.envoy_cpu_us_per_req"
    for setup in ("etraced", "etraced1", "full"):
        if not {setup, "sidecar"} <= present:
            continue
        out[f"etracing.{setup}.cpu_ratio"] = _paired(
            rounds, lambda s, a=setup: s[a][cpu] / s["sidecar"][cpu]
        )
        out[f"etracing.{setup}.loss_pct"] = _paired(
            rounds, lambda s, a=setup: 100 * (1 - s[a][rps] / s["sidecar"][rps])
        )
        out[f"etracing.{setup}.envoy_added_us"] = _paired(
            rounds, lambda s, a=setup: s[a][envoy_cpu] - s["sidecar"][envoy_cpu]
        )
        for other in ("naive", "native"):
            if other in present:
                out[f"etracing.{setup}.rps/{other}"] = _paired(
                    rounds, lambda s, a=setup, b=other: s[a][rps] / s[b][rps]
                )
    for setup in ("ntraced", "ntraced1"):  # Envoy's tracer with no processor: the floor
        if {setup, "native"} <= present:
            out[f"etracing.{setup}.loss_pct"] = _paired(
                rounds, lambda s, a=setup: 100 * (1 - s[a][rps] / s["native"][rps])
            )
            out[f"etracing.{setup}.envoy_added_us"] = _paired(
                rounds, lambda s, a=setup: s[a][envoy_cpu] - s["native"][envoy_cpu]
            )
    return out


def tracing_cost(rounds: Sequence[Round], present: set[str]) -> dict[str, float]:
    """What decision spans at 100 % sampling cost: ``traced`` against ``sidecar`` (tracing
    off) in the same round: saturation throughput loss (%), added processor CPU per decision
    (µs) and added p50 / p99 (ms) at each fixed rate."""
    if not {"sidecar", "traced"} <= present:
        return {}

    def diff(key: str) -> float:
        return _paired(rounds, lambda s: s["traced"][key] - s["sidecar"][key])

    def loss_against(reference: str) -> float:
        """Saturation throughput lost by ``traced`` against ``reference``, in %."""
        key = "saturation.rps"
        return _paired(rounds, lambda s: 100 * (1 - s["traced"][key] / s[reference][key]))

    out = {
        "tracing.saturation_loss_pct": loss_against("sidecar"),
        "tracing.saturation.processor_cpu_us_per_req": diff("saturation.processor_cpu_us_per_req"),
        "tracing.saturation.envoy_cpu_us_per_req": diff("saturation.envoy_cpu_us_per_req"),
    }
    for window in rate_windows(rounds):
        for figure in ("p50_ms", "p99_ms"):
            out[f"tracing.{window}.{figure}"] = diff(f"{window}.{figure}")
    if "bare" in present:  # tracing and metrics on, against both off
        out["tracing.saturation_loss_vs_bare_pct"] = loss_against("bare")
    return out


def targets(comp: Mapping[str, float], med: Mapping[str, Figures]) -> list[dict[str, Any]]:
    """DESIGN.md's targets (read as same-run ratios), each with its measured value."""
    sidecar = med.get("sidecar", {})
    rows = [
        ("sidecar CPU per decision <= 0.4 x naive (saturation)", "<=", 0.4,
         comp.get("saturation.processor_cpu_us_per_req.sidecar/naive")),
        ("saturation >= 3 x naive", ">=", 3.0, comp.get("saturation.rps.sidecar/naive")),
        ("saturation >= 0.2 x native", ">=", 0.2, comp.get("saturation.rps.sidecar/native")),
        ("added p50 at 1000 req/s <= +0.5 ms", "<=", 0.5,
         comp.get("rate_1000.p50_ms.sidecar-native")),
        ("added p99 at 1000 req/s <= +2 ms", "<=", 2.0,
         comp.get("rate_1000.p99_ms.sidecar-native")),
        ("sidecar resident memory <= 80 MB", "<=", 80.0, sidecar.get("processor_rss_mb")),
        ("tracing at 100 % sampling: saturation loss <= 15 %", "<=", 15.0,
         comp.get("tracing.saturation_loss_pct")),
        ("tracing + metrics on vs both off (bare): saturation loss <= 15 %", "<=", 15.0,
         comp.get("tracing.saturation_loss_vs_bare_pct")),
        ("Envoy tracing 100 %: sidecar CPU per decision <= 1.15 x tracing off", "<=", 1.15,
         comp.get("etracing.etraced.cpu_ratio")),
        ("end-to-end tracing 100 % (full): saturation loss <= 15 %", "<=", 15.0,
         comp.get("etracing.full.loss_pct")),
        ("Envoy tracing 1 %: saturation loss <= 5 %", "<=", 5.0,
         comp.get("etracing.etraced1.loss_pct")),
        ("Envoy tracing 1 %: saturation >= 3 x naive", ">=", 3.0,
         comp.get("etracing.etraced1.rps/naive")),
        ("Envoy tracing 1 %: saturation >= 0.45 x native", ">=", 0.45,
         comp.get("etracing.etraced1.rps/native")),
    ]  # fmt: skip
    optional = ("Envoy tracing", "end-to-end tracing")  # only for runs with those setups
    out = []
    for name, op, limit, value in rows:
        if name.startswith(optional) and value is None:
            continue
        if value is None or not math.isfinite(value):
            out.append({"target": name, "limit": limit, "measured": None, "met": None})
            continue
        met = value <= limit if op == "<=" else value >= limit
        out.append({"target": name, "limit": limit, "measured": value, "met": met})
    return out


def fmt(value: float | None, digits: int = 0) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:,.{digits}f}"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def saturation_table(med: Mapping[str, Figures], comp: Mapping[str, float]) -> list[str]:
    setups = [s for s in SETUP_ORDER if s in med]
    lines = [_row(["median of rounds", *setups, "sidecar ÷ native", "sidecar ÷ naive"])]
    lines.append(_row(["---"] * (len(setups) + 3)))
    rows = [
        ("saturation, requests/s", "saturation.rps", 0, "saturation.rps", 2),
        ("Envoy CPU, µs/request", "saturation.envoy_cpu_us_per_req", 0,
         "saturation.envoy_cpu_us_per_req", 2),
        ("processor CPU, µs/request", "saturation.processor_cpu_us_per_req", 0,
         "saturation.processor_cpu_us_per_req", 2),
        ("Envoy + processor CPU, cores busy", None, 2, None, 0),
        ("their CPUs busy, any cause (1.00 = CPU-bound)", "saturation.sut_cpus_busy", 2, None, 0),
        ("processor resident memory, MB (end of round)", "processor_rss_mb", 1, None, 0),
        ("share routed to v2", "saturation.v2_share", 3, None, 0),
    ]  # fmt: skip
    for label, key, digits, comp_key, comp_digits in rows:
        cells = [label]
        for setup in setups:
            f = med[setup]
            if key is None:
                busy = f.get("saturation.envoy_cpu_util", math.nan)
                value = busy + f.get("saturation.processor_cpu_util", 0.0)
            else:
                value = f.get(key, math.nan)
            cells.append(fmt(value, digits))
        for other in ("native", "naive"):
            ratio = comp.get(f"{comp_key}.sidecar/{other}") if comp_key else None
            cells.append(fmt(ratio, comp_digits) if ratio is not None else "")
        lines.append(_row(cells))
    return lines


def latency_table(med: Mapping[str, Figures], comp: Mapping[str, float]) -> list[str]:
    header = ["rate, req/s", "setup", "p50 ms", "p99 ms", "p99.9 ms", "added p50 ms",
              "added p99 ms", "Envoy µs/req", "processor µs/req", "decided",
              "send lag p99 ms"]  # fmt: skip
    lines = [_row(header), _row(["---"] * len(header))]
    windows = sorted(
        {k.split(".")[0] for f in med.values() for k in f if k.startswith("rate_")},
        key=lambda k: int(k[5:]),
    )
    for window in windows:
        for setup in SETUP_ORDER:
            f = med.get(setup)
            if f is None or f"{window}.p50_ms" not in f:
                continue
            added = [comp.get(f"{window}.{p}.{setup}-native") for p in ("p50_ms", "p99_ms")]
            cells = [window[5:], setup]
            cells += [fmt(f.get(f"{window}.{p}"), 2) for p in ("p50_ms", "p99_ms", "p999_ms")]
            cells += [f"{a:+.2f}" if a is not None and math.isfinite(a) else "" for a in added]
            cells += [fmt(f.get(f"{window}.envoy_cpu_us_per_req"))]
            cells += [fmt(f.get(f"{window}.processor_cpu_us_per_req"))]
            cells += [fmt(f.get(f"{window}.decided"), 3)]
            cells += [fmt(f.get(f"{window}.send_lag_p99_ms"), 2)]
            lines.append(_row(cells))
    return lines


def tracing_table(comp: Mapping[str, float]) -> list[str]:
    """Tracing at 100 % sampling (``traced``) against tracing off (``sidecar``), same round."""
    if "tracing.saturation_loss_pct" not in comp:
        return []
    lines = [_row(["traced minus sidecar (median of same-round differences)", "value"])]
    lines.append(_row(["---", "---"]))
    lines.append(
        _row(["saturation throughput loss, %", fmt(comp["tracing.saturation_loss_pct"], 1)])
    )
    if "tracing.saturation_loss_vs_bare_pct" in comp:
        loss = fmt(comp["tracing.saturation_loss_vs_bare_pct"], 1)
        lines.append(_row(["saturation loss against bare (metrics and tracing off), %", loss]))
    for key, label in (
        ("tracing.saturation.processor_cpu_us_per_req", "sidecar CPU per decision, µs"),
        ("tracing.saturation.envoy_cpu_us_per_req", "Envoy CPU per request, µs"),
    ):
        lines.append(_row([label, f"{comp[key]:+.1f}" if math.isfinite(comp[key]) else "n/a"]))
    for key in sorted(k for k in comp if k.startswith("tracing.rate_")):
        _, window, figure = key.split(".")
        label = f"{figure.replace('_ms', '')} at {window[5:]} req/s, ms"
        value = comp[key]
        lines.append(_row([label, f"{value:+.2f}" if math.isfinite(value) else "n/a"]))
    return lines


def envoy_tracer_table(comp: Mapping[str, float]) -> list[str]:
    """Envoy's tracer on against off, same round: with the sidecar (``etraced*``, ``full``
    against ``sidecar``) and with no processor at all (``ntraced*`` against ``native``)."""
    rows = [
        ("etraced", "sidecar", "Envoy tracer 100 %"),
        ("etraced1", "sidecar", "Envoy tracer 1 %"),
        ("full", "sidecar", "Envoy tracer 100 % + decision spans"),
        ("ntraced", "native", "Envoy tracer 100 %, no processor"),
        ("ntraced1", "native", "Envoy tracer 1 %, no processor"),
    ]
    present = [row for row in rows if f"etracing.{row[0]}.loss_pct" in comp]
    if not present:
        return []
    lines = [_row(["setup", "against", "saturation loss, %", "sidecar CPU ratio",
                   "Envoy µs/request added"])]  # fmt: skip
    lines.append(_row(["---"] * 5))
    for setup, reference, label in present:
        ratio = comp.get(f"etracing.{setup}.cpu_ratio")
        added = comp.get(f"etracing.{setup}.envoy_added_us")
        lines.append(
            _row([f"{setup} ({label})", reference, fmt(comp[f"etracing.{setup}.loss_pct"], 1),
                  fmt(ratio, 2), fmt(added, 1)])
        )  # fmt: skip
    return lines


def targets_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    lines = [_row(["target (same run)", "measured", "met"]), _row(["---"] * 3)]
    for row in rows:
        met = {True: "yes", False: "**no**", None: "n/a"}[row["met"]]
        lines.append(_row([row["target"], fmt(row["measured"], 2), met]))
    return lines
