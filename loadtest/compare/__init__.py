"""The comparison-guard simulation bench's internals (entry point: loadtest.compare_sim)."""
