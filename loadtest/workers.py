"""Sidecar throughput with 1 vs 2 worker processes (``extproc serve --workers N``), no Envoy.

``python -m loadtest.workers [--rounds 3] [--duration 5] [--out DIR]``

h2load (Debian nghttp2-client) drives the sidecar directly, so the sidecar is the bottleneck:
gRPC ``Process`` calls (POST, ``content-type: application/grpc``, ``te: trailers``, body = one
gRPC-framed ``ProcessingRequest`` with request headers), over many connections so that
SO_REUSEPORT deals them over the workers. ``--clients`` h2load processes run at once, each
with its own user (region, device): bodies differ, decisions differ.

Each round measures every worker count in turn (the order alternates between rounds), each on
a freshly started sidecar: a warm-up run calibrates the rate, then the measured run sends
``rate x --duration`` calls (bounded in count by ``-n`` and in time by a deadline). Figures:
decisions/s, sidecar CPU us per decision (utime + stime of its whole process group, from
/proc), each worker's share of the decisions (from the merged /metrics), and h2load's own
CPU. A run counts as clean only if h2load saw every call succeed with HTTP 200, the sidecar's
decision counter rose by exactly the calls sent and no stream ended in an error; h2load does
not report gRPC trailers, so the counter stands in for ``grpc-status: 0``.

On a 2-core machine h2load shares the cores with the workers: read the ratio as a floor.
Writes ``workers.json`` and ``workers.md`` to ``--out`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from envoy.service.ext_proc.v3 import external_processor_pb2 as ext_proc
from prometheus_client.parser import text_string_to_metric_families

from extproc.stack.processes import ManagedProcess, Service, free_port, wait_until
from loadtest.harness import procstat
from loadtest.harness.setups import processor_env
from loadtest.harness.tools import ensure_tool, tool_version

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "examples" / "rules.yaml"
PROCESS_PATH = "/envoy.service.ext_proc.v3.ExternalProcessor/Process"
USERS = [
    ("bench-user-17", "us-east", "ios-17"),
    ("bench-user-42", "eu-west", "android-14"),
    ("bench-user-99", "ap-south", "web-chrome"),
    ("bench-user-123", "us-west", "ios-16"),
]
WARMUP_CALLS = 3000
START_TIMEOUT = 60.0


def grpc_body(user: str, region: str, device: str) -> bytes:
    """One gRPC message: flag byte 0, 4-byte length, a request-headers ProcessingRequest."""
    request = ext_proc.ProcessingRequest()
    headers = request.request_headers.headers.headers
    for name, value in (("x-user-id", user), ("x-region", region), ("x-device-model", device)):
        header = headers.add()
        header.key, header.raw_value = name, value.encode()
    message = request.SerializeToString()
    return b"\x00" + len(message).to_bytes(4, "big") + message


def scrape(port: int) -> dict[str, Any]:
    """Decisions (total and by worker), stream errors and ready workers from /metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        body = reply.read().decode()
    by_worker: dict[str, float] = {}
    errors = loaded = 0.0
    for family in text_string_to_metric_families(body):
        for s in family.samples:
            if s.name == "tts_canary_decisions_total":
                worker = s.labels.get("worker", "0")
                by_worker[worker] = by_worker.get(worker, 0.0) + s.value
            elif s.name == "tts_canary_stream_errors_total":
                errors += s.value
            elif s.name == "tts_canary_rules_reloads_total" and s.labels["outcome"] == "loaded":
                loaded += s.value
    return {"by_worker": by_worker, "errors": errors, "ready": loaded}


class Sidecar(Service):
    """``extproc serve --workers N`` in its own process group; a context manager, ready when
    every worker has loaded the rules and answers /metrics."""

    def __init__(self, workers: int, log: Path) -> None:
        self.workers, self.port, self.metrics_port = workers, free_port(), free_port()
        argv = [sys.executable, "-m", "extproc", "serve", "--rules", str(RULES)]
        argv += ["--workers", str(workers), "--listen", f"127.0.0.1:{self.port}"]
        argv += ["--metrics", f"127.0.0.1:{self.metrics_port}"]
        env = processor_env({"EXTPROC_LOG_LEVEL": "warning"})
        self.process = ManagedProcess("sidecar", argv, log, env=env, cwd=REPO)

    def _all_ready(self) -> bool:
        try:
            return bool(scrape(self.metrics_port)["ready"] >= self.workers)
        except OSError:
            return False

    def wait_ready(self) -> None:
        wait_until(self._all_ready, "every worker ready", START_TIMEOUT, self.process)

    def __exit__(self, *exc: object) -> None:
        self.process.stop(timeout=20)  # the supervisor drains its workers first


H2LOAD_DONE = re.compile(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded")
H2LOAD_2XX = re.compile(r"status codes: (\d+) 2xx")


def h2load(args: argparse.Namespace, port: int, calls: int, bodies: list[Path]) -> dict[str, Any]:
    """``calls`` Process calls split over ``len(bodies)`` h2load processes run at once."""
    tool = ensure_tool("h2load")
    each, conns = max(1, calls // len(bodies)), max(1, args.connections // len(bodies))
    url = f"http://127.0.0.1:{port}{PROCESS_PATH}"
    common = ["-c", str(conns), "-m", str(args.streams), "-t", "1", "-n", str(each)]
    common += ["-H", "content-type: application/grpc", "-H", "te: trailers"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    procs = [
        subprocess.Popen([tool, *common, "-d", str(body), url], stdout=subprocess.PIPE, text=True)
        for body in bodies
    ]
    outputs = [p.communicate(timeout=args.duration * 4 + 30)[0] for p in procs]
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    sent = succeeded = ok_2xx = 0
    for out in outputs:
        done, status = H2LOAD_DONE.search(out), H2LOAD_2XX.search(out)
        if done is None or status is None:
            raise RuntimeError(f"h2load output not understood:\n{out}")
        sent += int(done[1])
        succeeded += int(done[2])
        ok_2xx += int(status[1])
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return {"sent": sent, "succeeded": succeeded, "2xx": ok_2xx, "wall_s": wall, "cpu_s": cpu}


def measure(args: argparse.Namespace, workers: int, bodies: list[Path], log: Path) -> dict:
    """One worker count on a fresh sidecar: calibrate, then one measured run."""
    with Sidecar(workers, log) as sidecar:
        warm = h2load(args, sidecar.port, WARMUP_CALLS, bodies)
        rate = warm["succeeded"] / warm["wall_s"]
        calls = int(min(max(rate * args.duration, 5000), args.max_calls))
        first = scrape(sidecar.metrics_port)
        cpu_before = procstat.group_cpu_seconds(sidecar.process.pid)
        run = h2load(args, sidecar.port, calls, bodies)
        cpu = procstat.group_cpu_seconds(sidecar.process.pid) - cpu_before
        last = scrape(sidecar.metrics_port)
    shares = {
        w: last["by_worker"][w] - first["by_worker"].get(w, 0.0) for w in sorted(last["by_worker"])
    }
    decided = sum(shares.values())
    clean = run["sent"] == run["succeeded"] == run["2xx"] == decided
    clean = clean and last["errors"] == first["errors"]
    return {
        "workers": workers,
        "calls": run["sent"],
        "decided": decided,
        "clean": clean,
        "decisions_per_s": decided / run["wall_s"],
        "sidecar_cpu_us_per_decision": cpu / decided * 1e6 if decided else None,
        "sidecar_cpu_util": cpu / run["wall_s"],
        "h2load_cpu_util": run["cpu_s"] / run["wall_s"],
        "share_by_worker": {w: n / decided for w, n in shares.items()} if decided else {},
        "wall_s": run["wall_s"],
    }


def summarize(rounds: list[list[dict]], counts: list[int]) -> dict[str, Any]:
    by_count = {n: [r for round_ in rounds for r in round_ if r["workers"] == n] for n in counts}
    summary: dict[str, Any] = {}
    for n, runs in by_count.items():
        summary[str(n)] = {
            "decisions_per_s": statistics.median(r["decisions_per_s"] for r in runs),
            "sidecar_cpu_us_per_decision": statistics.median(
                r["sidecar_cpu_us_per_decision"] for r in runs
            ),
            "sidecar_cpu_util": statistics.median(r["sidecar_cpu_util"] for r in runs),
            "h2load_cpu_util": statistics.median(r["h2load_cpu_util"] for r in runs),
            "min_worker_share": statistics.median(min(r["share_by_worker"].values()) for r in runs),
            "all_clean": all(r["clean"] for r in runs),
        }
    if "1" in summary and "2" in summary:
        summary["ratio_2_to_1"] = summary["2"]["decisions_per_s"] / summary["1"]["decisions_per_s"]
    return summary


def markdown(result: dict[str, Any]) -> str:
    s, m = result["summary"], result["machine"]
    lines = [
        f"# Sidecar workers: {m['nproc']} CPUs ({m['cpu_model']}), {len(result['rounds'])} "
        f"rounds, medians; {result['settings']['connections']} connections x "
        f"{result['settings']['streams']} streams, {result['tool']}",
        "",
        "| workers | decisions/s | sidecar CPU us/decision | sidecar CPU (cores) "
        "| h2load CPU (cores) | smallest worker share | all calls clean |",
        "|---|---|---|---|---|---|---|",
    ]
    for n in result["settings"]["workers"]:
        f = s[str(n)]
        lines.append(
            f"| {n} | {f['decisions_per_s']:.0f} | {f['sidecar_cpu_us_per_decision']:.1f} "
            f"| {f['sidecar_cpu_util']:.2f} | {f['h2load_cpu_util']:.2f} "
            f"| {f['min_worker_share']:.1%} | {'yes' if f['all_clean'] else 'NO'} |"
        )
    if "ratio_2_to_1" in s:
        lines += ["", f"2 workers / 1 worker: {s['ratio_2_to_1']:.2f}x decisions/s"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.workers", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    parser.add_argument("--workers", default="1,2", help="worker counts to compare")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--streams", type=int, default=8, help="concurrent streams/connection")
    parser.add_argument("--clients", type=int, default=4, help="h2load processes (users)")
    parser.add_argument("--max-calls", type=int, default=500_000)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.workers.split(",")]
    out = args.out or Path(tempfile.mkdtemp(prefix="loadtest-workers-"))
    out.mkdir(parents=True, exist_ok=True)
    bodies = []
    for i, user in enumerate(USERS[: args.clients]):
        bodies.append(out / f"body-{i}.bin")
        bodies[-1].write_bytes(grpc_body(*user))
    rounds = []
    for r in range(args.rounds):
        order = counts if r % 2 == 0 else counts[::-1]
        rounds.append([measure(args, n, bodies, out / "sidecar.log") for n in order])
        figures = ", ".join(f"{x['workers']}w {x['decisions_per_s']:.0f}/s" for x in rounds[-1])
        print(f"round {r + 1}: {figures}", file=sys.stderr)
    result = {
        "machine": procstat.machine(),
        "tool": tool_version([ensure_tool("h2load"), "--version"]),
        "settings": {**{k: v for k, v in vars(args).items() if k != "out"}, "workers": counts},
        "rounds": rounds,
        "summary": summarize(rounds, counts),
    }
    (out / "workers.json").write_text(json.dumps(result, indent=2))
    table = markdown(result)
    (out / "workers.md").write_text(table)
    print(table)
    print(f"results in {out}", file=sys.stderr)
    return 0 if all(r["clean"] for round_ in rounds for r in round_) else 1


if __name__ == "__main__":
    sys.exit(main())
