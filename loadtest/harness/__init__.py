"""The load-test harness: setups, loads, measurement, rounds and the report."""
