"""``extproc stack``: the local stack in the foreground (and its demo mode).

Starts the stand-in TTS servers, the sidecar and Envoy on the documented loopback ports,
prints them with a curl line to try, and runs until Ctrl-C or SIGTERM; then stops everything
in reverse order and exits 0. If a process dies on its own, the stack stops and exits 1.
With ``--demo`` it sends demo traffic once ready, prints the table and exits (``--keep``:
keeps running afterwards). Logs and the rendered Envoy config go to ``--run-dir``.

The audio probe process (``extproc probes``) runs too, unless ``--no-probes``: it sends the
probe corpus to v1 and v2 through Envoy's loopback probe listener and feeds the policy's quality
guards (docs/audio-gate.md).

Observability, both off by default: ``--otlp-endpoint HOST:PORT`` makes Envoy and the sidecar
export traces over OTLP/gRPC there (``--trace-sampling`` percent of requests, default 100);
``--prometheus`` also runs a real Prometheus (Debian package ``prometheus``) on
127.0.0.1:``--prometheus-port`` (default 9090) scraping Envoy and the sidecar with the rules of
deploy/prometheus/alerts.yaml, its storage in a temp dir removed when the stack stops.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from extproc.stack.controller import LocalController
from extproc.stack.demo import print_report, run_demo
from extproc.stack.otlp import OtlpTarget
from extproc.stack.probes import LocalProbes
from extproc.stack.processes import NotReadyError
from extproc.stack.prometheus import DEFAULT_PORT as DEFAULT_PROMETHEUS_PORT
from extproc.stack.prometheus import find_prometheus
from extproc.stack.stack import DEFAULT_METRICS_PORT, DEFAULT_RULES, REPO_ROOT, Stack

DEFAULT_RUN_DIR = REPO_ROOT / ".stack"
DEFAULT_POLICY = REPO_ROOT / "examples" / "policy.yaml"
STATE_FILE = "rollout-state.json"
WATCH_SECONDS = 0.5


def register(subparsers: Any) -> None:
    """Add the ``stack`` subcommand to an argparse subparsers object (sets ``func``)."""
    parser = subparsers.add_parser(
        "stack",
        help="run Envoy, the sidecar and stand-in TTS servers locally (foreground)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    parser.add_argument(
        "--rules", type=Path, default=DEFAULT_RULES, help="rules file (default: %(default)s)"
    )
    parser.add_argument("--demo", action="store_true", help="send demo traffic, print a table")
    parser.add_argument(
        "--demo-users", type=int, default=500, help="demo: synthetic users (default %(default)s)"
    )
    parser.add_argument(
        "--demo-requests", type=int, default=3000, help="demo: requests (default %(default)s)"
    )
    parser.add_argument("--keep", action="store_true", help="demo: keep running afterwards")
    parser.add_argument(
        "--run-dir", type=Path, default=DEFAULT_RUN_DIR, help="logs go here (default %(default)s)"
    )
    parser.add_argument(
        "--otlp-endpoint",
        metavar="HOST:PORT",
        help="export traces of Envoy and the sidecar over OTLP/gRPC to this collector "
        "(plaintext; default: no tracing)",
    )
    parser.add_argument(
        "--trace-sampling",
        type=float,
        default=100.0,
        metavar="PERCENT",
        help="with --otlp-endpoint: percent of requests traced (default %(default)s)",
    )
    parser.add_argument(
        "--prometheus",
        action="store_true",
        help="also run Prometheus (Debian package 'prometheus') scraping Envoy and the sidecar",
    )
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=DEFAULT_PROMETHEUS_PORT,
        help="with --prometheus: its port on 127.0.0.1 (default %(default)s)",
    )
    parser.add_argument(
        "--policy",
        type=Path,
        default=DEFAULT_POLICY,
        help="ramp policy of the local rollout controller (default: %(default)s)",
    )
    parser.add_argument(
        "--no-probes",
        action="store_true",
        help="run without the audio probe process (the policy's quality guards then hold)",
    )
    parser.add_argument(
        "--no-controller",
        action="store_true",
        help="run without the rollout controller (the sidecar serves the rules file's share)",
    )
    parser.set_defaults(func=run)


def stack_from_args(args: argparse.Namespace) -> Stack:
    """The Stack the parsed ``extproc stack`` arguments describe (ValueError if invalid)."""
    if args.prometheus and find_prometheus() is None:
        raise ValueError("--prometheus: no prometheus binary on PATH (apt-get install prometheus)")
    tracing = None
    if args.otlp_endpoint:
        tracing = OtlpTarget.parse(args.otlp_endpoint, sampling_percent=args.trace_sampling)
    sidecar_args = [] if args.no_controller else ["--state", str(args.run_dir / STATE_FILE)]
    return Stack(
        rules=args.rules,
        run_dir=args.run_dir,
        sidecar_args=sidecar_args,
        metrics_port=DEFAULT_METRICS_PORT,
        otlp_endpoint=tracing,
        prometheus_port=args.prometheus_port if args.prometheus else None,
    )


def _print_banner(
    stack: Stack, controller: LocalController | None, probes: LocalProbes | None
) -> None:
    ports = stack.ports
    optional = ""
    if probes is not None:
        optional += f"\n  audio probes     {probes.url}/pairs   metrics {probes.url}/metrics"
    if controller is not None:
        optional += (
            f"\n  rollout          admin {controller.admin}, state {controller.state}, "
            f"guard metrics {controller.metrics_url}"
            f"\n                   try: extproc rollout status | start | rollback"
        )
    if stack.tracing is not None:
        optional += f"\n  traces           OTLP/gRPC to {stack.tracing.url}"
    if stack.prometheus is not None:
        optional += f"\n  prometheus       {stack.prometheus.url}   (alerts: /alerts)"
    print(
        f"""TTS canary stack is up (logs in {stack.run_dir})
  envoy listener   {stack.listener_url}
  envoy admin      {stack.admin_url}   (Prometheus stats: /stats/prometheus)
  sidecar (gRPC)   {stack.sidecar_target}   metrics {stack.metrics_url}
  tts v1 / v2      127.0.0.1:{ports.tts_v1} / 127.0.0.1:{ports.tts_v2}
  rules            {stack.rules}{optional}
Try:
  curl -s -D- -o /tmp/out.wav -H 'x-user-id: alice' -H 'x-region: us-east' \\
       -d '{{"text":"hello"}}' {stack.listener_url}/tts
Envoy's access log (cohort, reason, rule, bucket per request): {stack.access_log_path}
Ctrl-C stops everything.""",
        flush=True,
    )


def _watch(stack: Stack, helpers: list[LocalController | LocalProbes | None]) -> int:
    """Block until a process dies (-> 1); Ctrl-C / SIGTERM end it with KeyboardInterrupt."""
    idle = threading.Event()  # never set: a wait that signals can interrupt
    watched = stack.processes() + [h.process for h in helpers if h is not None]
    while not idle.wait(WATCH_SECONDS):
        dead = [process for process in watched if not process.alive()]
        for process in dead:
            print(f"{process.name} exited ({process.returncode}):", file=sys.stderr)
            print(process.log_tail(), file=sys.stderr)
        if dead:
            return 1
    return 1


def run(args: argparse.Namespace) -> int:
    """Run the stack in the foreground; the exit code of ``extproc stack``."""
    if not args.rules.is_file():
        print(f"extproc stack: no rules file at {args.rules}", file=sys.stderr)
        return 2
    if not args.no_controller and not args.policy.is_file():
        print(f"extproc stack: no policy file at {args.policy}", file=sys.stderr)
        return 2
    try:
        stack = stack_from_args(args)
    except ValueError as exc:
        print(f"extproc stack: {exc}", file=sys.stderr)
        return 2
    # Ctrl-C and SIGTERM both raise KeyboardInterrupt, from the first moment (also when the
    # shell started us with SIGINT ignored), so leaving the ``with`` stops whatever started.
    interrupts = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, signal.default_int_handler) for sig in interrupts}
    try:
        with contextlib.ExitStack() as running:
            running.enter_context(stack)
            env = dict(os.environ, PYTHONUNBUFFERED="1")
            probes = None
            if not args.no_probes:
                probes = running.enter_context(LocalProbes(stack.probe_url, args.run_dir, env))
            controller = None
            if not args.no_controller:
                controller = running.enter_context(
                    LocalController(
                        args.policy,
                        args.run_dir / STATE_FILE,
                        stack.admin_url,
                        args.run_dir,
                        env,
                        quality=probes.url if probes is not None else "",
                        live_metrics=stack.metrics_url,
                    )
                )
            _print_banner(stack, controller, probes)
            if args.demo:
                result = run_demo(stack, args.demo_users, args.demo_requests)
                print_report(result, args.demo_users, sys.stdout)
                if not args.keep:
                    clean = result.users_on_several_upstreams == 0 and not result.errors
                    return 0 if clean else 1
            return _watch(stack, [controller, probes])
    except NotReadyError as exc:
        print(f"extproc stack: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print("stack stopped", file=sys.stderr)
