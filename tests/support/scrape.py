"""Scrape Prometheus text expositions and read sample values (prometheus_client's parser).

Use these for values of the sidecar's metrics. For *names* as Prometheus stores them use
:func:`tests.support.promql.exposed_names`: the parser renames counter samples that lack
``_total`` (Envoy's), see there.
"""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families


def fetch(url: str, timeout: float = 5.0) -> str:
    """GET ``url`` and return the body as text."""
    with urllib.request.urlopen(url, timeout=timeout) as response:
        text: str = response.read().decode("utf-8")
    return text


def total(exposition: str, sample: str, **labels: str) -> float:
    """Sum of the samples named ``sample`` whose labels include ``labels`` (0 if none)."""
    value = 0.0
    for family in text_string_to_metric_families(exposition):
        for found in family.samples:
            if found.name == sample and all(found.labels.get(k) == v for k, v in labels.items()):
                value += found.value
    return value


def label_sets(exposition: str, sample: str) -> list[dict[str, str]]:
    """The label sets of every sample named ``sample``."""
    return [
        dict(found.labels)
        for family in text_string_to_metric_families(exposition)
        for found in family.samples
        if found.name == sample
    ]
