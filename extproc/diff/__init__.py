"""``extproc diff``: dry-run a rules change over a population of users (pure, no gRPC).

``engine.run_diff`` decides every user under OLD and NEW exactly as the sidecar would
(``plan``: the real decider once per attribute group; ``xxh64``: the buckets, vectorized),
``report`` turns the counts into the verdict CI acts on, ``command`` is the CLI edge.
"""
