"""Profile the sidecar under saturation with py-spy and summarise where its CPU goes.

    .venv/bin/python -m loadtest.profile [--seconds 20] [--out DIR] [--native]

Starts the instant upstream and the sidecar setup (pinned like the benchmark), saturates it
with wrk for the whole recording, and records the sidecar's process group with
``py-spy record --format raw --nonblocking --subprocesses`` (non-blocking: the sampled process
is never paused, so the profile does not slow it down). Writes ``profile.raw`` (collapsed
stacks, for flamegraph tools) and ``profile.md``, and prints the top functions by self time
(the function was on top of the stack) and by total time (anywhere in the stack), as a share
of the samples in which a thread was busy (py-spy drops idle samples without ``--idle``).
py-spy is a dev dependency: ``.venv/bin/pip install py-spy``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

from extproc.stack.processes import free_port
from loadtest.harness import loads
from loadtest.harness.rounds import log
from loadtest.harness.setups import (
    NEEDS_SINK,
    PROCESSORS,
    BenchPorts,
    OtlpSink,
    Pinning,
    ProcessorOptions,
    SystemUnderTest,
    Upstream,
)
from loadtest.harness.tools import ensure_wrk, pinned

FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")
TOP = 25


def find_py_spy() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = str(beside) if beside.exists() else shutil.which("py-spy")
    if not found:
        raise SystemExit("py-spy is not installed: .venv/bin/pip install py-spy")
    return found


def _function(frame: str) -> str:
    """``func (path/file.py:123)`` -> ``func (file.py)``: one entry per function."""
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{match['func']} ({Path(match['file']).name})"


def summarize(raw_lines: Iterable[str]) -> tuple[int, Counter[str], Counter[str]]:
    """Total samples, samples per function on top of the stack, samples per function anywhere
    in the stack (counted once per stack), from py-spy's raw (collapsed) format."""
    total, own, anywhere = 0, Counter[str](), Counter[str]()
    for line in raw_lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_function(f) for f in stack.split(";")[1:]]  # [0] is the process / thread
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        for function in set(frames):
            anywhere[function] += count
    return total, own, anywhere


def markdown(total: int, own: Counter[str], anywhere: Counter[str], title: str) -> str:
    lines = [f"# {title}", "", f"{total} busy samples.", ""]
    # functions on (nearly) every stack are the entry chain (main, the event loop): skipped
    inner = Counter({fn: n for fn, n in anywhere.items() if n < 0.98 * total})
    for name, table in (("self", own), ("total (entry chain omitted)", inner)):
        lines += [f"## Top {TOP} by {name} time", "", "| % | function |", "| ---: | --- |"]
        lines += [f"| {n / total * 100:.1f} | `{fn}` |" for fn, n in table.most_common(TOP)]
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.profile", description=__doc__)
    p.add_argument("--seconds", type=int, default=20, help="recording seconds (default 20)")
    p.add_argument("--rate", type=int, default=250, help="py-spy samples/s (default 250)")
    p.add_argument("--connections", type=int, default=64, help="wrk connections (default 64)")
    p.add_argument(
        "--native", action="store_true",
        help="include native (C) frames: pauses the sidecar at each sample (it runs slower) "
        "and C-level idle waits count as busy",
    )  # fmt: skip
    p.add_argument("--out", type=Path, help="output directory (default: a new temp dir)")
    p.add_argument("--sidecar-arg", action="append", default=[], metavar="ARG")
    p.add_argument(
        "--traced", action="store_true",
        help="profile the traced setup: decision spans at 100 %% to an OTLP sink",
    )  # fmt: skip
    p.add_argument(
        "--setup", choices=sorted(PROCESSORS - {"naive"}), default=None,
        help="profile this benchmark setup (e.g. etraced: Envoy's tracer on at 100 %%)",
    )  # fmt: skip
    args = p.parse_args(argv)
    if not 1 <= args.seconds <= 600:
        p.error("--seconds must be within 1..600")
    out = args.out or Path(tempfile.mkdtemp(prefix="loadtest-profile-"))
    out.mkdir(parents=True, exist_ok=True)
    py_spy, wrk = find_py_spy(), ensure_wrk()
    pinning, ports = Pinning.choose(True), BenchPorts.free()
    options = ProcessorOptions(extra_args=tuple(args.sidecar_arg))
    raw = out / "profile.raw"
    if pinning.load:
        os.sched_setaffinity(0, pinning.load)  # the driver and py-spy stay off the sidecar's CPU
    setup = args.setup or ("traced" if args.traced else "sidecar")
    with contextlib.ExitStack() as stack:
        stack.enter_context(Upstream(ports, out, pinning))
        if setup in NEEDS_SINK:
            sink = stack.enter_context(OtlpSink(free_port(), out, pinning))
            options = dataclasses.replace(options, otlp_endpoint=sink.endpoint)
        sut = stack.enter_context(SystemUnderTest(setup, ports, out, pinning, options))
        assert sut.processor is not None
        load_seconds = args.seconds + 4
        load = threading.Thread(
            target=loads.saturate,
            args=(wrk, ports.envoy.listener),
            kwargs={"connections": args.connections, "seconds": load_seconds,
                    "cpus": pinning.load},
            daemon=True,
        )  # fmt: skip
        load.start()
        record = [py_spy, "record", "--pid", str(sut.processor.pid), "--duration",
                  str(args.seconds), "--rate", str(args.rate), "--format", "raw", "--output",
                  str(raw), "--subprocesses"]  # fmt: skip
        # native frames need the process paused at each sample (py-spy refuses otherwise)
        record.append("--native" if args.native else "--nonblocking")
        log(f"recording {args.seconds}s of the sidecar (pid {sut.processor.pid}) under wrk")
        recorded = subprocess.run(
            pinned(record, pinning.load), capture_output=True, text=True, timeout=args.seconds + 60
        )
        if recorded.returncode != 0:
            raise SystemExit(f"py-spy failed ({recorded.returncode}):\n{recorded.stderr[-2000:]}")
        load.join(timeout=load_seconds + loads.MARGIN_SECONDS)
    total, own, anywhere = summarize(raw.read_text().splitlines())
    if not total:
        raise SystemExit(f"py-spy recorded no busy samples (see {raw})")
    report = markdown(total, own, anywhere, "Sidecar profile under saturation (py-spy)")
    (out / "profile.md").write_text(report)
    print(report)
    log(f"raw stacks: {raw}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
