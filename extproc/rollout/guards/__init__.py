"""Guards: readings judged against thresholds, and the sources that read them.

``judge`` is pure; ``signals`` reads Envoy stats or Prometheus; ``envoy_stats`` parses.
"""
