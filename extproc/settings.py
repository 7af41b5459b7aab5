"""Sidecar settings: environment variables with defaults, overridden by flags.

Each setting: (env var, default, meaning). ``extproc serve --help`` prints the
same table, so the help tells the truth about defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from extproc.addresses import parse_store_url, split_host_port
from extproc.h2_limits import DEFAULTS as DEFAULT_H2_LIMITS
from extproc.h2_limits import LIMIT_SETTINGS, H2Limits


@dataclass(frozen=True, slots=True)
class Setting:
    env: str
    default: str
    help: str


LISTEN = Setting("EXTPROC_LISTEN", "127.0.0.1:50051", "gRPC address (host:port or unix:PATH)")
METRICS = Setting("EXTPROC_METRICS", "127.0.0.1:9464", "Prometheus /metrics address; '' = off")
RULES = Setting("EXTPROC_RULES", "", "rules YAML file (required)")
STATE = Setting(
    "EXTPROC_STATE",
    "",
    "rollout state: a file path (or file:///path) or etcd://host:port,.../prefix"
    " ('' = rules share only)",
)
GRACE = Setting("EXTPROC_GRACE_SECONDS", "5", "drain deadline for in-flight streams on SIGTERM")
POLL = Setting("EXTPROC_RELOAD_POLL_SECONDS", "0.25", "how often the rules path is checked")
SERVER = Setting(
    "EXTPROC_SERVER", "h2", "server model: h2 (built-in HTTP/2, fast) or grpc (grpc.aio)"
)
LOOP = Setting("EXTPROC_LOOP", "uvloop", "event loop: uvloop or asyncio")
DECISION_LOG = Setting(
    "EXTPROC_DECISION_LOG_RATE", "0", "fraction 0..1 of decisions logged as JSON lines"
)
LOG_LEVEL = Setting("EXTPROC_LOG_LEVEL", "info", "debug, info, warning or error")
WORKERS = Setting(
    "EXTPROC_WORKERS",
    "1",
    "worker processes sharing the --listen port (SO_REUSEPORT), 1..64; 1 = one process",
)
MAX_WORKERS = 64
#: The built-in HTTP/2 server's limits against hostile peers (extproc/h2_limits.py).
H2_LIMITS = tuple(Setting(env, default, help) for env, default, help in LIMIT_SETTINGS)
SAMPLE_RATE = Setting(
    "EXTPROC_SAMPLE_RATE",
    "0",
    "live audio sampling: fraction 0..1 of requests per cohort ('0.01', or 'v1=0.01,v2=0.05')"
    " whose text and audio are scored; 0 = off",
)
SAMPLE_CPU = Setting(
    "EXTPROC_SAMPLE_CPU", "0.25", "CPU budget of live scoring in cores; over it, samples drop"
)
SAMPLE_MAX_PER_SECOND = Setting(
    "EXTPROC_SAMPLE_MAX_PER_SECOND",
    "auto",
    "live sampling cap: most requests per second and cohort asked for their bodies; 'auto' ="
    " EXTPROC_SAMPLE_CPU / 0.05, 'inf' = no cap",
)
SAMPLE_SCORER = Setting(
    "EXTPROC_SAMPLE_SCORER",
    "extproc.quality:assess",
    "live scoring function (module:function, the probes' --scorer interface), run in the"
    " scoring child",
)
SAMPLE_COHORTS = ("v1", "v2")


@dataclass(frozen=True, slots=True)
class ServeSettings:
    """Validated settings of ``extproc serve``."""

    rules: str
    listen: str
    metrics: str
    grace_seconds: float
    poll_seconds: float
    loop: str
    log_level: str
    decision_log_rate: float = 0.0
    state: str = ""
    server: str = "h2"
    workers: int = 1
    #: Set for a worker of ``--workers N``: bind the shared port with SO_REUSEPORT.
    reuse_port: bool = False
    h2_limits: H2Limits = DEFAULT_H2_LIMITS
    #: Live sampling: (cohort, fraction) pairs; empty or all 0 = off (docs/audio-gate.md).
    sample_rates: tuple[tuple[str, float], ...] = ()
    sample_cpu: float = 0.25
    sample_scorer: str = SAMPLE_SCORER.default
    #: Samples per second per cohort at most; None = derived from ``sample_cpu``.
    sample_max_per_second: float | None = None

    @property
    def sampling(self) -> bool:
        return any(rate > 0 for _, rate in self.sample_rates)


def env(setting: Setting) -> str:
    return os.environ.get(setting.env, setting.default)


def positive_float(name: str, text: str) -> float:
    """Parse a positive number or raise ValueError naming the setting."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not value > 0:
        raise ValueError(f"{name}: {text!r} must be greater than 0")
    return value


def validate(settings: ServeSettings) -> ServeSettings:
    """Reject impossible settings at start-up with a message naming the setting."""
    if not settings.rules:
        raise ValueError(f"--rules (or {RULES.env}) is required")
    if settings.server not in ("h2", "grpc"):
        raise ValueError(f"{SERVER.env}: {settings.server!r} is not one of h2, grpc")
    if settings.loop not in ("uvloop", "asyncio"):
        raise ValueError(f"{LOOP.env}: {settings.loop!r} is not one of uvloop, asyncio")
    if not 0.0 <= settings.decision_log_rate <= 1.0:
        raise ValueError(f"{DECISION_LOG.env}: {settings.decision_log_rate} is not within 0..1")
    if settings.log_level not in ("debug", "info", "warning", "error"):
        raise ValueError(f"{LOG_LEVEL.env}: {settings.log_level!r} is not a log level")
    if not settings.listen.startswith("unix:"):
        _check_address(f"--listen (or {LISTEN.env})", settings.listen)
    if settings.metrics:
        _check_address(f"--metrics (or {METRICS.env})", settings.metrics)
    _check_workers(settings)
    if settings.state:
        try:
            parse_store_url(settings.state)
        except ValueError as exc:
            raise ValueError(f"--state (or {STATE.env}): {exc}") from None
    return settings


def workers_count(text: str) -> int:
    """Parse the worker count (1..MAX_WORKERS) or raise ValueError naming the setting."""
    name = f"--workers (or {WORKERS.env})"
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a whole number") from None
    if not 1 <= value <= MAX_WORKERS:
        raise ValueError(f"{name}: {value} is not within 1..{MAX_WORKERS}")
    return value


def _check_workers(settings: ServeSettings) -> None:
    """Several workers share one TCP port: a unix socket or port 0 cannot be shared."""
    name = f"--workers (or {WORKERS.env})"
    if not 1 <= settings.workers <= MAX_WORKERS:
        raise ValueError(f"{name}: {settings.workers} is not within 1..{MAX_WORKERS}")
    if settings.workers == 1:
        return
    listen = f"--listen (or {LISTEN.env})"
    if settings.listen.startswith("unix:"):
        raise ValueError(
            f"{name}: {settings.workers} workers need a TCP host:port to share,"
            f" {listen} is {settings.listen!r}"
        )
    if split_host_port(settings.listen)[1] == 0:
        raise ValueError(
            f"{name}: {settings.workers} workers need a fixed port to share,"
            f" {listen} is {settings.listen!r} (port 0)"
        )


def _check_address(name: str, address: str) -> None:
    try:
        split_host_port(address)
    except ValueError as exc:
        raise ValueError(f"{name}: {exc}") from None


def fraction(name: str, text: str) -> float:
    """Parse a number within 0..1 or raise ValueError naming the setting."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{name}: {text!r} is not within 0..1")
    return value


def sample_rates(text: str) -> tuple[tuple[str, float], ...]:
    """Parse ``EXTPROC_SAMPLE_RATE``: one fraction for every cohort (``0.01``) or per cohort
    (``v1=0.01,v2=0.05``; a cohort not named is not sampled). ValueError naming the setting."""
    name = f"--sample-rate (or {SAMPLE_RATE.env})"
    text = text.strip()
    if "=" not in text:
        rate = fraction(name, text or "0")
        return tuple((cohort, rate) for cohort in SAMPLE_COHORTS)
    rates: dict[str, float] = {}
    for part in text.split(","):
        cohort, _, value = part.strip().partition("=")
        cohort = cohort.strip()
        if cohort not in SAMPLE_COHORTS:
            raise ValueError(f"{name}: {cohort!r} is not a cohort ({', '.join(SAMPLE_COHORTS)})")
        if cohort in rates:
            raise ValueError(f"{name}: {cohort} is given twice")
        rates[cohort] = fraction(f"{name} {cohort}", value.strip())
    return tuple((cohort, rates.get(cohort, 0.0)) for cohort in SAMPLE_COHORTS)


def sample_max_per_second(text: str) -> float | None:
    """Parse ``EXTPROC_SAMPLE_MAX_PER_SECOND``: ``auto`` (None: derived from the CPU budget),
    a number > 0, or ``inf`` (no cap). ValueError naming the setting."""
    text = text.strip()
    if text == "auto":
        return None
    return positive_float(SAMPLE_MAX_PER_SECOND.env, text)
