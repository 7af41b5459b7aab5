"""Load-test harness: native Envoy routing vs the naive processor vs the sidecar, same run.

Run ``python -m loadtest.bench --help``; see loadtest/RESULTS.md for the latest table.
"""
