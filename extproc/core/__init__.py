"""The pure decision core: rules model, rules loader and cohort assignment.

Nothing in this package does network I/O or imports gRPC, Prometheus,
OpenTelemetry or asyncio (tests/unit/core/test_purity.py checks it). The loader
reads one file; everything else is plain functions over frozen data.
"""
