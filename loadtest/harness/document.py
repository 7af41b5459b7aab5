"""The markdown report of a run (written to the out dir and to loadtest/RESULTS.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from loadtest.harness import report

HOW_TO_READ = """\
How to read it: every figure is the median over rounds; ratios and added latencies are
computed inside each round (the setups of a round ran back to back on the same ports) and
then the median is taken. *native* is Envoy routing by weighted clusters (no processor),
*naive* is Envoy + loadtest/naive_processor.py (a plain grpc.aio servicer), *sidecar* is
Envoy + `extproc serve` with examples/rules.yaml (tracing off, metrics on: the defaults),
*traced* the same with a decision span per request at 100 % sampling exported over OTLP/gRPC
to a collector that discards (loadtest/otlp_sink.py, on the load CPUs; Envoy's own tracer
off), and *bare* (when run) the sidecar with metrics and tracing both off. The upstreams
answer instantly (a second Envoy with direct responses), so only routing is measured. CPU
per request is utime + stime from /proc over the window divided by the requests Envoy
completed. Latency is open-loop, measured from each request's scheduled send time. Absolute
figures depend on the machine; compare the ratios (see DESIGN.md, last section). On a shared
or virtual machine the tails (p99, p99.9) are dominated by stalls of the whole machine (the
send-lag column shows how late the client itself was): compare p50 first, and trust an added
p99 only when it is stable across rounds."""


def _windows(rounds: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, Mapping[str, float]]]:
    """(setup, window, figures of that window) for every window of every round."""
    out: list[tuple[str, str, Mapping[str, float]]] = []
    for rnd in rounds:
        for setup, figures in rnd["setups"].items():
            names = {k.split(".")[0] for k in figures if "." in k}
            for window in sorted(names):
                prefix = window + "."
                sub = {k[len(prefix) :]: v for k, v in figures.items() if k.startswith(prefix)}
                out.append((setup, f"round {rnd['round']} {window}", sub))
    return out


def tracing_section(comp: Mapping[str, float]) -> list[str]:
    table = report.tracing_table(comp)
    if not table:
        return []
    return ["## Tracing cost (traced vs sidecar, same round)", "", *table, ""]


def envoy_tracer_section(comp: Mapping[str, float]) -> list[str]:
    table = report.envoy_tracer_table(comp)
    if not table:
        return []
    return ["## Envoy's tracer (on vs off, same round)", "", *table, ""]


def conditions(result: Mapping[str, Any]) -> list[str]:
    """Bullet lines: how the run was made and whether it was clean."""
    meta, rounds = result["meta"], result["rounds"]
    options = meta["options"]
    windows = _windows(rounds)
    failed = [f"{s} {w}" for s, w, f in windows if f.get("all_200") != 1.0]
    late = [f"{s} {w} ({f['decided']:.2f})" for s, w, f in windows if f.get("decided", 1) < 0.999]
    limit, max_lag = options["max_other_cpu"], options["max_send_lag"]
    disturbed = [
        f"{s} {w}"
        for s, w, f in windows
        if f.get("other_cpu_util", 0.0) > limit or f.get("send_lag_p99_ms", 0.0) > max_lag
    ]
    discarded = sum(len(rnd.get("discarded", [])) for rnd in rounds)
    lag = [f["send_lag_p99_ms"] for _, _, f in windows if "send_lag_p99_ms" in f]
    client_cpu = [f["client_cpu_util"] for _, _, f in windows if "client_cpu_util" in f]
    pins = meta["pinning"]
    return [
        f"- {options['rounds']} round(s), {options['duration']} s per measurement, "
        f"{options['warmup']} s warm-up per setup, rates {options['rates']} req/s, "
        f"saturation with wrk -t1 -c{options['connections']}, order rotated every round",
        f"- pinning: Envoy + processor on CPUs {pins['envoy_and_processor']}, load generator "
        f"+ upstream + driver on CPUs {pins['load_generator_upstream_and_driver']}",
        f"- every request answered 200: {'yes' if not failed else 'NO: ' + ', '.join(failed)}",
        "- processor decided every request in time: "
        + ("yes" if not late else "no, decided fraction below 1 in " + ", ".join(late))
        + " (a processor that falls behind fails open after Envoy's 0.2 s message_timeout: "
        "those requests go to v1 undecided, still answered 200)",
        f"- disturbed windows (other programs above {limit} cores, or the open-loop client's "
        f"send lag p99 above {max_lag} ms): {discarded} attempt(s) measured again (figures kept "
        f"in the JSON under `discarded`); still disturbed after "
        f"{options['retries']} retries: {', '.join(disturbed) if disturbed else 'none'}",
        f"- open-loop client: worst send lag p99 {report.fmt(max(lag, default=math.nan), 2)} ms, "
        f"worst CPU use {report.fmt(max(client_cpu, default=math.nan), 2)} cores",
    ]


def render(result: Mapping[str, Any]) -> str:
    """The whole markdown document."""
    meta = result["meta"]
    machine = meta["machine"]
    med, comp = result["medians"], result["comparison"]
    lines = [
        "# Load-test results",
        "",
        f"- date: {meta['date']}",
        f"- command: `{meta['command']}`",
        f"- machine: {machine['nproc']} CPUs, {machine['cpu_model']}, Linux {machine['kernel']}",
        f"- tools: {meta['envoy_version']}; {meta['wrk_version']}; Python {meta['python']}",
        "",
        "## Saturation (closed loop, wrk)",
        "",
        *report.saturation_table(med, comp),
        "",
        "## Latency at fixed rates (open loop)",
        "",
        *report.latency_table(med, comp),
        "",
        *tracing_section(comp),
        *envoy_tracer_section(comp),
        "## Targets (DESIGN.md, read as same-run ratios)",
        "",
        *report.targets_table(result["targets"]),
        "",
        "## Conditions",
        "",
        *conditions(result),
        "",
        HOW_TO_READ,
        "",
    ]
    return "\n".join(lines)
