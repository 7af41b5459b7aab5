"""Metric names in PromQL expressions, in exposition text, and in the deploy/ files.

- :func:`metric_names` lists the metric names a PromQL expression selects (not functions,
  aggregations, keywords, label names or Grafana variables).
- :func:`exposed_names` lists the series names of an exposition text *as Prometheus stores
  them*. Not prometheus_client's parser: it appends ``_total`` to every counter sample, so
  Envoy's ``envoy_cluster_upstream_rq_xx`` would come out as ``..._xx_total``, a name no
  Prometheus server has (and Envoy's counter ``envoy_cluster_upstream_rq`` would collide with
  its real ``envoy_cluster_upstream_rq_total``).
- :func:`dashboard_queries` / :func:`alert_queries` read the expressions of deploy/.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "tts-canary-dashboard.json"
ALERTS = REPO_ROOT / "deploy" / "prometheus" / "alerts.yaml"
#: The metric names the stack exports and the deploy files may query (one a line).
EXPORTED = REPO_ROOT / "tests" / "fixtures" / "exported_metric_names.txt"
# Grafana's interval variables, replaced by plain durations to check a query with promtool.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1m", "$__range": "1h"}

_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"}
    | {"group_left", "group_right", "inf", "nan", "atan2"}
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENTIFIER = re.compile(r"(?<![\w$.])[A-Za-z_:][A-Za-z0-9_:]*")


def metric_names(expr: str) -> set[str]:
    """The metric names ``expr`` selects, e.g. ``rate(a_total{x="y"}[5m]) / b`` -> {a_total, b}."""
    text = _STRING.sub('""', expr)
    text = _MATCHERS.sub("", text)
    text = _RANGE.sub("", text)
    text = _LABEL_LIST.sub("", text)
    names = set()
    for match in _IDENTIFIER.finditer(text):
        word = match.group()
        if word.lower() in _KEYWORDS or text[match.end() :].lstrip().startswith("("):
            continue  # a keyword, or a function / aggregation call
        names.add(word)
    return names


def exposed_names(exposition: str) -> set[str]:
    """Series names in a Prometheus text exposition, exactly as written (and stored)."""
    names = set()
    for line in exposition.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names.add(re.split(r"[{\s]", line, maxsplit=1)[0])
    return names


def load_dashboard(path: Path = DASHBOARD) -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return dashboard


def panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def dashboard_queries(path: Path = DASHBOARD) -> dict[str, str]:
    """``"panel title / refId"`` -> PromQL expression, for every target of every panel."""
    return {
        f"{panel['title']} / {target['refId']}": target["expr"]
        for panel in panels(load_dashboard(path))
        for target in panel.get("targets", [])
    }


def alert_queries(path: Path = ALERTS) -> dict[str, str]:
    """Alert (or recording rule) name -> PromQL expression."""
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return {
        rule.get("alert") or rule["record"]: rule["expr"]
        for group in groups
        for rule in group["rules"]
    }


def without_grafana_variables(expr: str) -> str:
    """``expr`` with Grafana's interval variables replaced by durations (plain PromQL)."""
    for variable, duration in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, duration)
    return expr


def deploy_metric_names() -> set[str]:
    """Every metric name the dashboard and the alerts select."""
    queries = [*dashboard_queries().values(), *alert_queries().values()]
    return set().union(*(metric_names(without_grafana_variables(q)) for q in queries))


def listed_names() -> set[str]:
    """The names in tests/fixtures/exported_metric_names.txt (comments left out)."""
    lines = EXPORTED.read_text(encoding="utf-8").splitlines()
    return {line.strip() for line in lines if line.strip() and not line.startswith("#")}
