"""Canary gate for TTS model rollouts: an Envoy ext_proc sidecar assigning sticky cohorts."""

__version__ = "0.1.0"
