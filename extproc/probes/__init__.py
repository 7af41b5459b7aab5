"""Paired audio probes: the same text to v1 and v2, scored out of the data path.

See docs/audio-gate.md.
"""
