"""``extproc rollout controller``: run the rollout controller in the foreground.

Loads the policy (strictly, with located errors), opens the state file (creating a pending
state if there is none), and checks the guards every interval until SIGINT or SIGTERM.
Exit codes: 0 after a signal, 2 for bad settings (policy, rules, state for another rollout,
a clock that disagrees with the stored one), 1 when a file store cannot be read. An etcd
store that does not answer at start is waited for (retried, logged); an etcd fault while
running never ends the process (see docs/etcd-faults.md).

``register(subparsers, extension=None)`` adds the subcommand; an :class:`Extension` (the
admin API) may add its own options and run beside the controller, sharing its instance.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, start_http_server

from extproc.addresses import split_host_port
from extproc.core.errors import RulesError
from extproc.core.loader import load_rules
from extproc.rollout import fleet_control
from extproc.rollout.clock import Clock, ScaledClock, SystemClock, parse_start
from extproc.rollout.controller import DEFAULT_INTERVAL, Controller
from extproc.rollout.guards.exposition import GuardCollector, guard_registry
from extproc.rollout.guards.judge import Source, family
from extproc.rollout.guards.live_source import DEFAULT_LIVE_METRICS, LiveSource, parse_urls
from extproc.rollout.guards.paired_compare import PAIRED_HORIZON
from extproc.rollout.guards.quality import DEFAULT_QUALITY_URL, QualitySource
from extproc.rollout.guards.signals import DEFAULT_ENVOY_ADMIN, EnvoyStatsSource, PrometheusSource
from extproc.rollout.notify.metrics import NotifyMetrics
from extproc.rollout.notify.notifier import Notifier, notifier_for
from extproc.rollout.policy import Policy, load_policy
from extproc.rollout.stores.opener import open_store
from extproc.rollout.stores.state_store import StateStore
from extproc.settings import STATE, Setting, env, positive_float

POLICY = Setting("EXTPROC_ROLLOUT_POLICY", "", "ramp policy YAML file (required)")
ENVOY_ADMIN = Setting(
    "EXTPROC_ENVOY_ADMIN", DEFAULT_ENVOY_ADMIN, "Envoy admin URL (guards on cluster stats)"
)
PROMETHEUS = Setting(
    "EXTPROC_PROMETHEUS_URL", "", "Prometheus base URL for promql guards ('' = none)"
)
QUALITY = Setting(
    "EXTPROC_QUALITY_URL", DEFAULT_QUALITY_URL, "probe process URL (guards on audio quality)"
)
LIVE_METRICS = Setting(
    "EXTPROC_LIVE_METRICS",
    DEFAULT_LIVE_METRICS,
    "comma-separated sidecar /metrics URLs (guards with source: live)",
)
INTERVAL = Setting("EXTPROC_CHECK_INTERVAL", str(DEFAULT_INTERVAL), "seconds between guard checks")
METRICS = Setting(
    "EXTPROC_CONTROLLER_METRICS",
    "",
    "host:port of the controller's /metrics: guard figures, notifications ('' = off)",
)
SETTINGS = (
    POLICY, STATE, ENVOY_ADMIN, PROMETHEUS, QUALITY, LIVE_METRICS, INTERVAL, METRICS,
    *fleet_control.SETTINGS,
)  # fmt: skip
log = logging.getLogger("extproc.rollout.controller")
T = TypeVar("T")


class Extension(Protocol):
    """Something that runs inside the controller process (e.g. the admin API)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def companion(
        self, args: argparse.Namespace, controller: Controller
    ) -> AbstractAsyncContextManager[None]:
        """Entered once the controller is built, before its first check; left after the
        loop stopped. Raise ValueError for bad settings (exit 2)."""
        ...


def register(subparsers: Any, extension: Extension | None = None) -> None:
    """Add ``controller`` to an argparse subparsers object (sets ``func``)."""
    epilog = "environment (flags win):\n" + "\n".join(
        f"  {s.env:<26} default {s.default!r:<24} {s.help}" for s in SETTINGS
    )
    p = subparsers.add_parser(
        "controller",
        help="run the rollout controller (guards -> ramp / rollback)",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--policy", default=env(POLICY), help=POLICY.help)
    p.add_argument(
        "--state",
        default=env(STATE),
        help="rollout state: a file path, file:///path or etcd://host:port,.../prefix (required)",
    )
    p.add_argument("--rules", default="", help="rules file whose rollout name must match")
    p.add_argument("--envoy-admin", default=env(ENVOY_ADMIN), help=ENVOY_ADMIN.help)
    p.add_argument("--prometheus", default=env(PROMETHEUS), help=PROMETHEUS.help)
    p.add_argument("--quality", default=env(QUALITY), help=QUALITY.help)
    p.add_argument("--live-metrics", default=env(LIVE_METRICS), help=LIVE_METRICS.help)
    p.add_argument("--interval", default=env(INTERVAL), help=INTERVAL.help)
    p.add_argument("--metrics", default=env(METRICS), help=METRICS.help)
    p.add_argument(
        "--clock-start",
        default="",
        metavar="ISO",
        help="calendar starts here (tests, demos), e.g. 2026-11-25T06:59:00+01:00; naive = UTC."
        " Stored with the state: restarts and other replicas follow it without this flag",
    )
    p.add_argument(
        "--clock-speed",
        default="1",
        metavar="X",
        help="calendar runs X times faster (tests, demos; default 1)",
    )
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    fleet_control.add_arguments(p)
    if extension is not None:
        extension.add_arguments(p)
    p.set_defaults(func=lambda args: run(args, extension))


def build_sources(
    policy: Policy,
    clock: Clock,
    envoy_admin: str,
    prometheus: str,
    quality: str = "",
    live_metrics: str = "",
) -> dict[str, Source]:
    """The sources the policy's guards need; ValueError if promql, quality or live guards
    lack a URL."""
    families = {family(g) for g in policy.guards}
    sources: dict[str, Source] = {}
    if "envoy" in families:
        horizon = max(g.window for g in policy.guards if family(g) == "envoy")
        sources["envoy"] = EnvoyStatsSource(envoy_admin, clock, horizon)
    if "promql" in families:
        if not prometheus:
            raise ValueError(f"the policy has promql guards: --prometheus (or {PROMETHEUS.env})")
        queries = [g.query for g in policy.guards if family(g) == "promql"]
        sources["promql"] = PrometheusSource(prometheus, queries)
    if "quality" in families:
        if not quality:
            raise ValueError(f"the policy has quality guards: --quality (or {QUALITY.env})")
        horizon = max(
            PAIRED_HORIZON if g.compare is not None else g.window
            for g in policy.guards
            if family(g) == "quality"
        )
        sources["quality"] = QualitySource(quality, horizon)
    if "live" in families:
        try:
            urls = parse_urls(live_metrics)
        except ValueError as exc:
            raise ValueError(
                f"the policy has live audio guards: --live-metrics ({LIVE_METRICS.env}): {exc}"
            ) from None
        horizon = max(g.window for g in policy.guards if family(g) == "live")
        sources["live"] = LiveSource(urls, clock, horizon)
    return sources


def build_clock(start: str, speed: str, store: StateStore | None = None) -> Clock:
    """The real clock, or a scaled one if a start or a speed other than 1 is given.

    With a ``store``, a scaled clock's origin is the one stored with the rollout (the first
    replica stores it), so all replicas and every restart read the same calendar; a replica
    started without clock flags follows a stored origin too. ValueError when the flags
    disagree with the stored origin (another speed, another start)."""
    factor = positive_float("--clock-speed", speed)
    scaled = bool(start) or factor != 1.0
    if store is None:
        return (
            ScaledClock(parse_start(start) if start else None, factor) if scaled else SystemClock()
        )
    stored = store.clock_origin(None)
    if not scaled:
        if stored is None:
            return SystemClock()
        log.warning("this rollout runs on a scaled clock: following it (%s)", stored.describe())
        return ScaledClock.from_origin(stored)
    wanted = ScaledClock(parse_start(start) if start else None, factor).origin
    origin = stored or store.clock_origin(wanted) or wanted
    if origin.speed != factor:
        raise ValueError(
            f"--clock-speed {factor:g}: this rollout's stored clock runs at x{origin.speed:g} "
            f"({origin.describe()}); pass --clock-speed {origin.speed:g}, or use a fresh state"
        )
    if start and origin is not wanted and origin.start != wanted.start:
        raise ValueError(
            f"--clock-start {start}: this rollout's calendar is stored ({origin.describe()}); "
            "drop --clock-start to follow it, or use a fresh state"
        )
    if origin is not wanted:
        log.info("scaled clock from the stored origin: %s", origin.describe())
    return ScaledClock.from_origin(origin)


def build_controller(args: argparse.Namespace) -> Controller:
    """A controller from parsed arguments; ValueError / RulesError name what is wrong."""
    if not args.policy or not args.state:
        raise ValueError(f"--policy ({POLICY.env}) and --state ({STATE.env}) are required")
    policy = load_policy(args.policy)
    if args.rules:
        rules = load_rules(args.rules)
        if rules.name != policy.rollout:
            raise ValueError(
                f"{args.policy}: policy.rollout {policy.rollout!r} is not the rollout "
                f"{rules.name!r} of {args.rules}"
            )
    store = open_store(args.state)
    current = _when_etcd_answers("reading the state", store.read)
    if current is not None and current.rollout != policy.rollout:
        raise ValueError(
            f"{args.state} holds rollout {current.rollout!r}, the policy is for "
            f"{policy.rollout!r}: use another state file"
        )
    clock = _when_etcd_answers(
        "reading the clock", lambda: build_clock(args.clock_start, args.clock_speed, store)
    )
    interval = positive_float("--interval", args.interval)
    sources = build_sources(
        policy, clock, args.envoy_admin, args.prometheus, args.quality, args.live_metrics
    )
    leadership = fleet_control.leadership_for(store, args)
    identity = fleet_control.identity_of(leadership)
    notifier = notifier_for(policy.notify, identity)
    return Controller(
        policy,
        store,
        sources,
        clock=clock,
        interval=interval,
        leadership=leadership,
        notifier=notifier,
    )


def _when_etcd_answers(what: str, read: Callable[[], T]) -> T:
    """``read()``, retried (backoff up to 2 s, until SIGTERM) while etcd is unavailable:
    a controller started during an etcd outage waits for it instead of exiting. Any other
    failure (a file store's, a refusal) is raised at once."""
    pause = 0.1
    while True:
        try:
            return read()
        except OSError as exc:
            if not getattr(exc, "fault", None):
                raise
            log.warning("%s: %s; retrying in %.1fs", what, getattr(exc, "diagnosis", exc), pause)
        time.sleep(pause)
        pause = min(pause * 2, 2.0)


def run(args: argparse.Namespace, extension: Extension | None = None) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        controller = build_controller(args)
    except (ValueError, RulesError) as exc:
        print(f"extproc rollout controller: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the state store cannot be reached
        print(f"extproc rollout controller: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(controller, args, extension))
    except ValueError as exc:
        print(f"extproc rollout controller: {exc}", file=sys.stderr)
        return 2
    return 0


async def _serve(
    controller: Controller, args: argparse.Namespace, extension: Extension | None
) -> None:
    policy = controller.policy
    log.info(
        "controlling %s from %s: state %s, %d guards, check every %gs",
        policy.rollout,
        policy.source,
        args.state,
        len(policy.guards),
        controller.interval,
    )
    async with contextlib.AsyncExitStack() as stack:
        notifier = controller.notifier if isinstance(controller.notifier, Notifier) else None
        if notifier is not None:
            stack.enter_context(notifier.running())  # closed last: drains after the loop
        if args.metrics:
            metrics = notifier.metrics if notifier is not None else NotifyMetrics()
            port = stack.enter_context(
                serving_guard_metrics(args.metrics, controller, metrics.registry)
            )
            log.info("controller metrics on %s (port %d)", args.metrics, port)
        if extension is not None:
            await stack.enter_async_context(extension.companion(args, controller))
        stack.enter_context(fleet_control.campaigning(controller, notifier))
        with _stop_on_signals(controller):
            await controller.run()
    log.info("controller stopped")


@contextlib.contextmanager
def serving_guard_metrics(
    address: str, controller: Controller, registry: CollectorRegistry | None = None
) -> Iterator[int]:
    """Serve the controller's guard figures (plus ``registry``'s metrics, e.g. the
    notifications') on ``address`` (host:port; port 0 picks one) at /metrics; yields the
    bound port. ValueError for an address that is bad or taken."""
    host, port = split_host_port(address)
    if registry is None:
        registry = guard_registry(lambda: controller.last)
    else:
        registry.register(GuardCollector(lambda: controller.last))
    try:
        http, thread = start_http_server(port, host, registry=registry)
    except OSError as exc:
        raise ValueError(f"guard metrics on {address}: {exc}") from None
    try:
        yield int(http.server_port)
    finally:
        http.shutdown()
        http.server_close()
        thread.join(timeout=5)


@contextlib.contextmanager
def _stop_on_signals(controller: Controller) -> Iterator[None]:
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, controller.request_stop)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
