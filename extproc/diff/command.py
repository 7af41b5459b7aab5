"""``extproc diff OLD NEW``: dry-run a rules change over a population (the CLI edge).

Reads the files (and the rollout state, with ``--state``), runs the pure engine, prints
the report, returns the exit code of ``report.verdict`` (documented there and in
docs/rules-diff.md). The store is opened only with ``--state``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from decimal import Decimal, InvalidOperation

from extproc.core.errors import RulesError
from extproc.core.loader import load_rules
from extproc.core.model import Rules
from extproc.diff import catalog
from extproc.diff.engine import run_diff
from extproc.diff.population import Population, SyntheticPopulation
from extproc.diff.report import EXIT_INVALID, EXIT_USAGE, Gate, render_text, summary
from extproc.diff.users_file import UsersFileError, load_users
from extproc.telemetry.privacy import ENV as ID_HASH_ENV
from extproc.telemetry.privacy import IdHasher

DEFAULT_SYNTHETIC = 1_000_000
MAX_SYNTHETIC = 1_000_000_000
_PERCENT = re.compile(r"\s*([0-9]+(?:\.[0-9]+)?)\s*%\s*")

EPILOG = f"""exit codes: 0 ok; 1 an input cannot be used; 2 bad usage; 3 the salt changed
without --new-experiment; 4 more users than --max-moved move v1->v2 or v2->v1 without
--allow-moves. Sampled ids are keyed hashes ({ID_HASH_ENV}; set it to the sidecars'
value to look a user up). See docs/rules-diff.md."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "diff",
        help="dry-run a rules change: who would change cohort (exit 3/4 gates for CI)",
        epilog=EPILOG,
    )
    p.add_argument("old", metavar="OLD", help="the rules file in force")
    p.add_argument("new", metavar="NEW", help="the edited rules file")
    who = p.add_mutually_exclusive_group()
    who.add_argument("--users", metavar="FILE", help="CSV of users: id,region,device[,header...]")
    who.add_argument(
        "--synthetic",
        metavar="N",
        type=int,
        help=f"N synthetic users user-0..user-(N-1) (default {DEFAULT_SYNTHETIC})",
    )
    p.add_argument(
        "--state",
        metavar="STORE",
        help="apply the rollout state of this store (file path or etcd:// URL), as sidecars do",
    )
    p.add_argument(
        "--max-moved",
        default="0%",
        metavar="PCT",
        help="largest share of users allowed to move in either direction (default 0%%)",
    )
    p.add_argument("--allow-moves", action="store_true", help="acknowledge moves (exit 0)")
    p.add_argument(
        "--new-experiment", action="store_true", help="acknowledge a salt change (exit 0)"
    )
    p.add_argument("--sample", type=int, default=10, metavar="K", help="hashed ids per direction")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        gate = Gate(_fraction(args.max_moved), args.allow_moves, args.new_experiment)
        if args.sample < 0:
            raise ValueError(f"--sample {args.sample}: must be 0 or more")
        size = DEFAULT_SYNTHETIC if args.synthetic is None else args.synthetic
        if not 1 <= size <= MAX_SYNTHETIC:
            raise ValueError(f"--synthetic {size}: must be 1..{MAX_SYNTHETIC}")
    except ValueError as exc:
        print(f"extproc diff: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        old, new = load_rules(args.old), load_rules(args.new)
        if args.state:
            old, new = _with_state(args.state, old, new)
        population = _population(args, size, old, new)
    except (RulesError, UsersFileError, ValueError, OSError) as exc:
        print(f"extproc diff: {exc}", file=sys.stderr)
        return EXIT_INVALID
    if not os.environ.get(ID_HASH_ENV):
        print(
            f"extproc diff: {ID_HASH_ENV} is not set: sampled hashes are for this run only",
            file=sys.stderr,
        )
    diff = run_diff(old, new, population, IdHasher.from_env().hash, args.sample)
    data = summary(diff, gate)
    print(json.dumps(data, indent=1) if args.json else render_text(data))
    return int(data["exit"])


def _fraction(text: str) -> float:
    match = _PERCENT.fullmatch(text)
    try:
        value = Decimal(match.group(1)) if match else None
    except InvalidOperation:
        value = None
    if value is None or value > 100:
        raise ValueError(f"--max-moved {text!r}: write a percentage like 1% or 0.5% (0..100%)")
    return float(value / 100)


def _population(args: argparse.Namespace, size: int, old: Rules, new: Rules) -> Population:
    if args.users:
        keys = {
            h for r in (old, new) for h in (r.identity.user_header, *r.identity.fallback_headers)
        }
        return load_users(args.users, keys)
    both = [old, new]
    return SyntheticPopulation(
        size, catalog.regions(both), catalog.devices(both), headers=catalog.headers(both)
    )


def _with_state(spec: str, old: Rules, new: Rules) -> tuple[Rules, Rules]:
    """Both files as a sidecar would serve them under the store's rollout state."""
    from extproc.rollout.effective import apply_state
    from extproc.rollout.stores.opener import open_store

    store = open_store(spec)
    try:
        state = store.read()
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()
    for rules in (old, new):
        if state is not None and state.rollout != rules.name:
            print(
                f"extproc diff: {rules.source}: rollout {rules.name!r} is not the state's "
                f"{state.rollout!r}; its own shares apply (as in a sidecar)",
                file=sys.stderr,
            )
    return apply_state(old, state), apply_state(new, state)
