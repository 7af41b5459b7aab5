"""CPU time and resident memory of a process group, read from /proc (Linux only).

Every process the harness starts leads its own process group (see
``extproc.stack.processes.ManagedProcess``), so a group is "that program and whatever it
forked" (e.g. sidecar workers). Figures are sums over the group's live processes:

- CPU: utime + stime of each process (all its threads), in seconds. Children that already
  exited are not counted, so measure over windows in which the group's members live.
- Memory: VmRSS of each process, in bytes (pages shared between members count once per
  member, so for a forking server the sum is an upper bound).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ProcStat:
    """One process's group id and CPU seconds (user + system) from /proc/PID/stat."""

    pid: int
    pgrp: int
    cpu_seconds: float


def read_stat(pid: int) -> ProcStat | None:
    """The stat of ``pid``, or None if it is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): pgrp is field 5, utime 14, stime 15.
    pgrp, utime, stime = int(fields[2]), int(fields[11]), int(fields[12])
    return ProcStat(pid, pgrp, (utime + stime) / CLOCK_TICKS)


def group_pids(pgrp: int) -> list[int]:
    """Pids of the live processes in process group ``pgrp``."""
    pids = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None and stat.pgrp == pgrp:
                pids.append(stat.pid)
    return pids


def group_cpu_seconds(pgrp: int, stats: dict[int, ProcStat] | None = None) -> float:
    """Total CPU seconds (user + system) used so far by the live members of ``pgrp``, from
    ``stats`` (a :func:`cpu_by_pid` snapshot) or read now."""
    stats = cpu_by_pid() if stats is None else stats
    return sum(stat.cpu_seconds for stat in stats.values() if stat.pgrp == pgrp)


def rss_bytes(pid: int) -> int:
    """VmRSS of one process in bytes (0 if it is gone)."""
    try:
        lines = (PROC / str(pid) / "status").read_text().splitlines()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    for line in lines:
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def group_rss_bytes(pgrp: int) -> int:
    """Sum of VmRSS over the live members of ``pgrp``."""
    return sum(rss_bytes(pid) for pid in group_pids(pgrp))


def cpu_by_pid() -> dict[int, ProcStat]:
    """The stat of every live process (kernel threads included)."""
    stats = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            stat = read_stat(int(entry.name))
            if stat is not None:
                stats[stat.pid] = stat
    return stats


def other_cpu_seconds(
    before: dict[int, ProcStat], after: dict[int, ProcStat], ours: set[int]
) -> float:
    """CPU seconds used between two :func:`cpu_by_pid` snapshots by processes outside the
    process groups ``ours`` (a process born in between counts whole; one that died in
    between is missed). Per-process times are exact; /proc/stat's machine-wide counters are
    tick-sampled and miss most of the short bursts of a proxy at low load."""
    total = 0.0
    for pid, stat in after.items():
        if stat.pgrp not in ours:
            earlier = before.get(pid)
            total += stat.cpu_seconds - (earlier.cpu_seconds if earlier else 0.0)
    return total


def cpu_jiffies() -> dict[int, tuple[int, int]]:
    """Per CPU, (busy, total) clock ticks so far from /proc/stat (busy: all but idle and
    iowait). Tick-sampled: exact enough for a saturated CPU, not for short bursts."""
    out = {}
    with (PROC / "stat").open() as stat:
        for line in stat:
            name, *values = line.split()
            if name.startswith("cpu") and name[3:].isdigit():
                ticks = [int(v) for v in values[:8]]
                idle = ticks[3] + ticks[4]
                out[int(name[3:])] = (sum(ticks) - idle, sum(ticks))
    return out


def busy_fraction(
    before: dict[int, tuple[int, int]], after: dict[int, tuple[int, int]], cpus: Iterable[int]
) -> float:
    """Fraction of the time the CPUs ``cpus`` were busy (for any reason) between two
    :func:`cpu_jiffies` snapshots."""
    busy = total = 0
    for cpu in cpus:
        busy += after[cpu][0] - before[cpu][0]
        total += after[cpu][1] - before[cpu][1]
    return busy / total if total else float("nan")


def machine() -> dict[str, object]:
    """What the figures were measured on: CPU count and model, kernel."""
    model = "unknown"
    for line in (PROC / "cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    uname = os.uname()
    return {"nproc": os.cpu_count(), "cpu_model": model, "kernel": uname.release}
