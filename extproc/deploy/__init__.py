"""Deployment artifacts rendered from the project's own sources (never edited by hand).

- :mod:`extproc.deploy.envoy_k8s`: the gateway pod's Envoy config, from envoy/envoy.yaml.
- :mod:`extproc.deploy.constraints`: the image's pinned dependency closure.

``scripts/render-deploy`` rewrites both files; the tests fail when a file is stale.
"""
