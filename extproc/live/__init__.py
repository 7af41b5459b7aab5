"""Live sampling (opt-in): score the audio of a sampled fraction of real requests per cohort,
out of the data path. See docs/audio-gate.md#live-sampling.

The sidecar side (:mod:`extproc.sidecar.sampling` with :mod:`.sampler`) asks Envoy for a
sampled request's bodies and hands a capped copy to :mod:`.feed`: a bounded, drop-when-full
queue in front of the probe process's scoring child (a niced process of its own, under a CPU
budget). Only aggregate figures per cohort leave it (:mod:`.metrics`). Bodies are never
logged or stored.
"""
