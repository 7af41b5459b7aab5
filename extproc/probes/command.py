"""``extproc probes``: the paired-probe process of the audio gate (docs/audio-gate.md).

Every interval the next text of the probe corpus goes to v1 and to v2 through Envoy's
internal probe listener (``--target``: ``POST {target}/v1{path}`` reaches only cluster tts_v1,
``/v2{path}`` only tts_v2; users' listener and routing are untouched). Both answers are scored
in a child process (``--scorer``, default the built-in scorers) within a CPU budget; the
paired figures are served on ``--listen`` (``/pairs`` for the rollout controller's quality
guards, ``/metrics`` for Prometheus). Exit codes: 0 after SIGINT/SIGTERM, 2 for bad settings.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from extproc.addresses import split_host_port
from extproc.probes.budget import CpuBudget
from extproc.probes.corpus import DEFAULT_CORPUS, load_corpus
from extproc.probes.metrics import ProbeMetrics
from extproc.probes.pairs import PairLog
from extproc.probes.runner import Answer, Fetch, Options, ProbeRunner
from extproc.probes.scoring import DEFAULT_SCORER, ScorerProcess
from extproc.probes.server import ProbeHttpServer
from extproc.settings import Setting, env, positive_float

TARGET = Setting("EXTPROC_PROBE_TARGET", "http://127.0.0.1:10001", "Envoy's probe listener URL")
PATH = Setting("EXTPROC_PROBE_PATH", "/tts", "the TTS request path behind /v1 and /v2")
LISTEN = Setting("EXTPROC_PROBE_LISTEN", "127.0.0.1:9470", "HTTP address for /pairs and /metrics")
CORPUS = Setting("EXTPROC_PROBE_CORPUS", str(DEFAULT_CORPUS), "probe corpus YAML file")
INTERVAL = Setting("EXTPROC_PROBE_INTERVAL", "10", "seconds between probe rounds")
CPU = Setting("EXTPROC_PROBE_CPU", "0.5", "scoring CPU budget, in cores")
SCORER = Setting("EXTPROC_PROBE_SCORER", DEFAULT_SCORER, "scorer as module:function")
SETTINGS = (TARGET, PATH, LISTEN, CORPUS, INTERVAL, CPU, SCORER)
REQUEST_TIMEOUT = 30.0
log = logging.getLogger("extproc.probes")


def register(subparsers: Any) -> None:
    """Add ``probes`` to an argparse subparsers object (sets ``func``)."""
    epilog = "environment (flags win):\n" + "\n".join(
        f"  {s.env:<26} default {s.default!r:<28} {s.help}" for s in SETTINGS
    )
    p = subparsers.add_parser(
        "probes",
        help="run the paired audio probes (v1 vs v2) for the quality guards",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--target", default=env(TARGET), help=TARGET.help)
    p.add_argument("--path", default=env(PATH), help=PATH.help)
    p.add_argument("--listen", default=env(LISTEN), help=LISTEN.help)
    p.add_argument("--corpus", default=env(CORPUS), help=CORPUS.help)
    p.add_argument("--interval", default=env(INTERVAL), help=INTERVAL.help)
    p.add_argument("--cpu", default=env(CPU), help=CPU.help)
    p.add_argument("--scorer", default=env(SCORER), help=SCORER.help)
    p.add_argument("--no-mos", action="store_true", help="skip DNSMOS (cheaper)")
    p.add_argument("--no-asr", action="store_true", help="skip the ASR read-back (cheaper)")
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=run)


def post_text(url: str, text: str, max_bytes: int, timeout: float = REQUEST_TIMEOUT) -> Answer:
    """POST ``{"text": text}``; the status and at most ``max_bytes + 1`` bytes of body (one
    more than allowed, so the scorer sees that it is too large). Never raises."""
    body = json.dumps({"text": text}).encode()
    headers = {"content-type": "application/json", "user-agent": "tts-canary-probe"}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Answer(response.status, response.read(max_bytes + 1))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code)
    except (OSError, ValueError):
        return Answer(0)


def http_fetch(target: str, path: str, max_bytes: int) -> Fetch:
    base = target.rstrip("/")

    async def fetch(cohort: str, text: str) -> Answer:
        return await asyncio.to_thread(post_text, f"{base}/{cohort}{path}", text, max_bytes)

    return fetch


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        corpus = load_corpus(args.corpus)
        host, port = split_host_port(args.listen)
        options = Options(
            interval=positive_float("--interval", args.interval),
            mos=not args.no_mos,
            asr=not args.no_asr,
        )
        cores = positive_float("--cpu", args.cpu)
        if not args.path.startswith("/"):
            raise ValueError(f"--path {args.path!r} must start with '/'")
    except ValueError as exc:  # RulesError is a ValueError
        print(f"extproc probes: {exc}", file=sys.stderr)
        return 2
    metrics, pairs = ProbeMetrics(), PairLog()
    scorer = ScorerProcess(args.scorer)
    try:
        server = ProbeHttpServer(host, port, pairs, metrics)
    except OSError as exc:
        print(f"extproc probes: cannot listen on {args.listen}: {exc}", file=sys.stderr)
        return 1
    server.start()
    log.info(
        "probing %s%s every %gs with %d texts, scoring within %g cores; serving %s",
        args.target,
        args.path,
        options.interval,
        len(corpus),
        cores,
        args.listen,
    )
    try:
        runner = ProbeRunner(
            corpus,
            http_fetch(args.target, args.path, options.max_bytes),
            scorer,
            CpuBudget(cores, burst=max(cores * options.interval * 2, 5.0), now=time.monotonic()),
            metrics,
            pairs,
            options,
        )
        asyncio.run(_until_signal(runner))
    finally:
        server.close()
        scorer.close()
    log.info("probes stopped")
    return 0


async def _until_signal(runner: ProbeRunner) -> None:
    task = asyncio.ensure_future(runner.run())
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await task
