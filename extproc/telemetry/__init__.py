"""Telemetry: Prometheus metrics, decision spans (OTLP), keyed id hashing, the decision log."""
