"""``extproc``: serve the sidecar, check rules offline, explain one decision, run the stack,
run the audio probes."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from yaml.nodes import MappingNode

from extproc import settings as S
from extproc.core.decide import decide
from extproc.core.errors import RulesError
from extproc.core.loader import load_rules, parse_rules
from extproc.core.model import percent
from extproc.core.yaml_source import compose, read_bytes
from extproc.h2_limits import limits_from_env
from extproc.sidecar.workers.channel import WorkerChannel
from extproc.telemetry.privacy import ENV as ID_HASH_ENV


def _settings_epilog() -> str:
    rows = [
        S.RULES,
        S.LISTEN,
        S.METRICS,
        S.STATE,
        S.SERVER,
        S.WORKERS,
        S.GRACE,
        S.POLL,
        S.LOOP,
        S.DECISION_LOG,
        S.LOG_LEVEL,
        S.SAMPLE_RATE,
        S.SAMPLE_CPU,
        S.SAMPLE_MAX_PER_SECOND,
        S.SAMPLE_SCORER,
        S.Setting(ID_HASH_ENV, "", "secret of the keyed user-id hash; '' = random per process"),
        *S.H2_LIMITS,
    ]
    lines = ["environment (flags win):"]
    lines += [f"  {s.env:<34} default {s.default!r:<18} {s.help}" for s in rows]
    return "\n".join(lines)


def _add_serve(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "serve",
        help="run the ext_proc sidecar",
        epilog=_settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--rules", default=S.env(S.RULES), help="rules YAML file")
    p.add_argument("--listen", default=S.env(S.LISTEN), help=S.LISTEN.help)
    p.add_argument("--metrics", default=S.env(S.METRICS), help=S.METRICS.help)
    p.add_argument("--state", default=S.env(S.STATE), help=S.STATE.help)
    p.add_argument("--workers", default=S.env(S.WORKERS), help=S.WORKERS.help)
    p.add_argument("--sample-rate", default=S.env(S.SAMPLE_RATE), help=S.SAMPLE_RATE.help)
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    try:
        settings = S.validate(
            S.ServeSettings(
                rules=args.rules,
                listen=args.listen,
                metrics=args.metrics,
                grace_seconds=S.positive_float(S.GRACE.env, S.env(S.GRACE)),
                poll_seconds=S.positive_float(S.POLL.env, S.env(S.POLL)),
                loop=S.env(S.LOOP),
                log_level=S.env(S.LOG_LEVEL),
                decision_log_rate=S.fraction(S.DECISION_LOG.env, S.env(S.DECISION_LOG)),
                server=S.env(S.SERVER),
                state=args.state,
                workers=S.workers_count(args.workers),
                h2_limits=limits_from_env(),
                sample_rates=S.sample_rates(args.sample_rate),
                sample_cpu=S.positive_float(S.SAMPLE_CPU.env, S.env(S.SAMPLE_CPU)),
                sample_scorer=S.env(S.SAMPLE_SCORER),
                sample_max_per_second=S.sample_max_per_second(S.env(S.SAMPLE_MAX_PER_SECOND)),
            )
        )
        worker = WorkerChannel.from_env()
    except ValueError as exc:
        print(f"extproc serve: {exc}", file=sys.stderr)
        return 2
    tag = f"worker {worker.index} " if worker is not None else ""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format=f"%(asctime)s %(levelname)s {tag}%(name)s: %(message)s",
    )
    if settings.workers > 1:
        from extproc.sidecar.workers.supervisor import Supervisor  # imports no grpc: its workers do

        return Supervisor(settings).run()
    return _serve_one(settings, worker)


def _serve_one(settings: S.ServeSettings, worker: WorkerChannel | None) -> int:
    """One sidecar process: on its own, or worker ``worker.index`` of a supervisor."""
    from extproc.sidecar.server import serve  # grpc is imported only to serve
    from extproc.telemetry.tracing import BrokenInstallError

    started = None
    if worker is not None:
        settings = dataclasses.replace(settings, reuse_port=True)
        started = worker.started
    try:
        if settings.loop == "uvloop":
            import uvloop

            return uvloop.run(serve(settings, started))
        return asyncio.run(serve(settings, started))
    except OSError as exc:  # a port in use, an unwritable unix socket path
        logging.getLogger("extproc").error("cannot start: %s", exc)
        return 1
    except BrokenInstallError as exc:
        logging.getLogger("extproc").error("cannot start: %s", exc)
        return 3


def _add_check(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "check", help="validate rules and policy files offline (exit 1 if any is invalid)"
    )
    p.add_argument("files", nargs="+", metavar="FILE")
    p.set_defaults(func=_check)


def _check(args: argparse.Namespace) -> int:
    """Each FILE is a rules file or, when its top-level key is ``policy``, a ramp policy."""
    from extproc.rollout.policy import parse_policy

    failed = 0
    for name in args.files:
        try:
            data = read_bytes(Path(name))
            if is_policy(name, data):
                policy = parse_policy(name, data)
                print(
                    f"{name}: ok: policy for {policy.rollout}, initial "
                    f"{percent(policy.initial_share)}, {len(policy.guards)} guards"
                )
                continue
            rules = parse_rules(name, data)
        except RulesError as exc:
            print(exc, file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: ok: {rules.name} version {rules.version}, share {percent(rules.share)}")
    return 1 if failed else 0


def is_policy(name: str, data: bytes) -> bool:
    """True for a document whose top level is a mapping with the key ``policy``."""
    root = compose(name, data)
    return isinstance(root, MappingNode) and any(
        getattr(key, "value", None) == "policy" for key, _ in root.value
    )


def _add_explain(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("explain", help="print the decision for one request as JSON")
    p.add_argument("--rules", required=True, help="rules YAML file")
    p.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a request header (repeatable)",
    )
    p.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    headers: dict[str, str] = {}
    for item in args.header:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            print(f"extproc explain: -H {item!r}: expected NAME=VALUE", file=sys.stderr)
            return 2
        headers.setdefault(name.strip().lower(), value)
    try:
        rules = load_rules(args.rules)
    except RulesError as exc:
        print(exc, file=sys.stderr)
        return 1
    d = decide(rules, headers)
    out = {
        "rollout": rules.name,
        "cohort": d.cohort.value,
        "reason": d.reason.value,
        "rule": d.rule,
        "bucket": d.bucket if d.bucket >= 0 else None,
        "share": percent(d.share) if d.share is not None else None,
        "version": d.version,
        "key_header": d.key_source,
    }
    print(json.dumps(out))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from extproc.diff.command import register as register_diff
    from extproc.healthcheck import register as register_health
    from extproc.probes.command import register as register_probes
    from extproc.rollout.admin.cli import register as register_rollout
    from extproc.stack.command import register as register_stack

    parser = argparse.ArgumentParser(prog="extproc", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_serve(sub)
    _add_check(sub)
    _add_explain(sub)
    register_stack(sub)
    register_rollout(sub)
    register_health(sub)
    register_diff(sub)
    register_probes(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))
