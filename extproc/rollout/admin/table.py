"""``extproc rollout status`` as text for people. Pure: plain dicts in, a string out.

The input is ``admin_wire.status_json(...)`` (the same data ``--json`` prints). Times are
the controller's calendar (UTC); "in 1h 12m" is by the controller's clock, so a scaled
test clock reads right too.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

PERCENT_SIGNALS = (
    "error_rate",
    "silence_ratio",
    "clipping_ratio",
    "invalid_audio_rate",
    "truncation",
)
FROZEN = "yes: inside a freeze window the ramp waits (rollback is never frozen)"


def render_status(status: dict[str, Any]) -> str:
    """Stage, share, time to the next step, freeze, guard figures, last transitions."""
    stage = f", stage {status['stage']}" if status["stage"] else ""
    share = f"{status['share']} on v2"
    if status["phase"] == "rolled_back":
        share += f" (resume goes back to {status['resume_share']})"
    elif status["phase"] == "pending":
        share = "not started: sidecars serve the rules file's own share"
    lines = [
        f"rollout      {status['rollout']} (revision {status['revision']})",
        f"phase        {status['phase']}{stage}",
        f"share        {share}",
        f"next step    {_next_step(status)}",
        f"frozen       {FROZEN if status['frozen'] else 'no'}",
        f"last change  {_time(status['updated_at'])} by {status['actor']}: {_said(status)}",
    ]
    if "leadership" in status:
        lines.append(f"leader       {leader_text(status['leadership'])}")
    if status.get("calendar_time"):
        lines.append(f"calendar     {_calendar(status)}")
    lines += [
        "",
        f"guards       {_verdict(status)}",
    ]
    plain = [f for f in status["guards"] if "compare" not in f]
    compared = [f for f in status["guards"] if "compare" in f]
    if plain:
        lines += _table(
            ("guard", "signal", "cohort", "value", "threshold", "samples", "verdict", "detail"),
            [_figure_row(f) for f in plain],
        )
    if compared:
        lines += ["", "comparisons  v2 against v1 over the stage (always-valid sequential test)"]
        lines += _table(
            ("guard", "metric", "effect", "interval", "margin", "p-value", "e-value",
             "samples v2/v1", "verdict"),
            [_compare_row(f) for f in compared],
        )  # fmt: skip
    lines += ["", "last transitions (oldest first)"]
    if status["transitions"]:
        lines += _table(
            (
                "time (UTC)",
                "rev",
                "phase",
                "share",
                "stage",
                "actor",
                "action",
                "operator's reason",
            ),
            [_transition_row(t) for t in status["transitions"]],
        )
    else:
        lines.append("  none yet")
    return "\n".join(lines)


def render_state(action: str, state: dict[str, Any]) -> str:
    """One line after a change, e.g. ``pause: gpt-sovits-v2 paused at stage 2, share 20%
    (revision 7)``."""
    stage = f" at stage {state['stage']}" if state["stage"] else ""
    return (
        f"{action}: {state['rollout']} {state['phase']}{stage}, share {state['share']} "
        f"(revision {state['revision']})"
    )


def leader_text(lead: dict[str, Any]) -> str:
    """Who leads, since when, and whether the replica that answered does."""
    if not lead or not lead.get("elected"):
        return "no election (file store): this replica decides alone"
    me = lead.get("replica") or "this replica"
    if lead.get("replica_leads"):
        since = _time(lead.get("leader_since"))
        return f"{me} (the replica that answered) leads, since {since}"
    leader = lead.get("leader")
    if not leader:
        why = lead.get("outage") or "an election is under way"
        return f"none known ({why}); {me} answered, standing by"
    admin = f", admin {lead['leader_admin']}" if lead.get("leader_admin") else ""
    since = _time(lead.get("leader_since"))
    return f"{leader}{admin}, since {since}; {me} answered, standing by (changes go to the leader)"


def _said(status: dict[str, Any]) -> str:
    """The last change: the action, then the operator's words if any."""
    words = status.get("operator_reason")
    return f"{status['reason']} (operator's reason: {words})" if words else status["reason"]


def _calendar(status: dict[str, Any]) -> str:
    speed = status.get("clock_speed") or 1.0
    when = _time(status.get("calendar_time"))
    return when if speed == 1.0 else f"{when} (scaled clock, x{speed:g})"


def duration_text(seconds: float) -> str:
    """The two largest units: 3725 -> '1h 2m', 3600 -> '1h', 45 -> '45s', 90061 -> '1d 1h'."""
    left = round(seconds)
    parts: list[tuple[int, str]] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if left >= size or parts:
            parts.append((left // size, unit))
            left %= size
    if not parts:
        return "0s"
    shown = parts[:2] if len(parts) > 1 and parts[1][0] else parts[:1]
    return " ".join(f"{n}{u}" for n, u in shown)


def _next_step(status: dict[str, Any]) -> str:
    seconds = status["next_step_in_seconds"]
    if seconds is None:
        return "none scheduled"
    due = "due now" if seconds <= 0 else f"in {duration_text(seconds)}"
    return f"to {status['next_share']} {due} (at {_time(status['next_step_at'])})"


def _verdict(status: dict[str, Any]) -> str:
    if status["verdict"] is None:
        return "not checked yet"
    return f"{status['verdict']} (checked {_time(status['checked_at'])})"


def _figure_row(figure: dict[str, Any]) -> list[str]:
    signal = figure["signal"]
    value = figure["value"]
    live = " (live)" if figure.get("source") == "live" else ""
    return [
        figure["name"],
        signal + live,
        figure["cohort"] or "-",
        "-" if value is None else _measure(signal, value),
        _measure(signal, figure["threshold"]),
        f"{figure['samples']} (min {figure['min_samples']})",
        figure["verdict"] or "-",
        figure["detail"],
    ]


def _compare_row(figure: dict[str, Any]) -> list[str]:
    c = figure["compare"]
    show = _effect_format(c["metric"])
    level = f"{(1 - c['alpha']) * 100:g}%"
    interval = f"[{show(c['effect_low'])}, {show(c['effect_high'])}] {level}"
    e_value = "-" if c["e_value"] is None else f"{c['e_value']:.3g}"
    samples = f"{c['samples_v2']}/{c['samples_v1']}"
    if c["metric"] in _PAIRED:
        samples = f"{c['samples_v2']} pairs"
    return [
        figure["name"],
        "mos drop" if c["metric"] == "mos" else c["metric"],
        show(figure["value"]),
        interval,
        show(figure["threshold"]),
        f"{c['p_value']:.3g} (fail <= {c['alpha']:g})",
        e_value,
        f"{samples} (min {figure['min_samples']})",
        figure["verdict"] or "-",
    ]


_PAIRED = ("mos", "asr_wer", "silence_ratio", "clipping_ratio")


def _effect_format(metric: str) -> Callable[[float | None], str]:
    """Relative changes for latency and error rates; the audio metrics' paired differences
    (worse-positive) as numbers (MOS, WER) or percentage points (ratios)."""
    if metric.endswith("_ratio"):
        return lambda v: "?" if v is None else f"{v * 100:+.1f}pp"
    if metric in _PAIRED:
        return lambda v: "?" if v is None else f"{v:+.3f}"
    return _change


def _change(value: float | None) -> str:
    """A relative change: 0.213 -> '+21.3%'; None -> '?' (unbounded or not measured)."""
    return "?" if value is None else f"{value * 100:+.1f}%"


def _transition_row(entry: dict[str, Any]) -> list[str]:
    phases = entry["from_phase"]
    if entry["to_phase"] != entry["from_phase"]:
        phases += f" -> {entry['to_phase']}"
    shares = entry["from_share"]
    if entry["to_share"] != entry["from_share"]:
        shares += f" -> {entry['to_share']}"
    return [
        _time(entry["at"]),
        str(entry["revision"]),
        phases,
        shares,
        str(entry["stage"]),
        entry["actor"],
        entry["reason"],
        entry.get("operator_reason") or "-",
    ]


def _measure(signal: str, value: float) -> str:
    """A guard figure in its unit: milliseconds for latency, percent for error rates and the
    audio ratios, a plain number for MOS, WER and PromQL."""
    if signal.startswith("latency"):
        return f"{value * 1000:.0f}ms"
    if signal in PERCENT_SIGNALS:
        return f"{value * 100:.2f}%"
    return f"{value:.4g}"


def _time(iso: str | None) -> str:
    """'2026-11-25T07:00:00Z' -> '2026-11-25 07:00:00'."""
    return iso.replace("T", " ").removesuffix("Z") if iso else "-"


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows, strict=True)]
    return [
        "  " + "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in (headers, *rows)
    ]
