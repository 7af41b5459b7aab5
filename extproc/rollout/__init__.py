"""Rollout control: the ramp policy, the persisted state machine, guards and the switch.

``policy``, ``state`` and ``effective`` are pure (no I/O beyond reading the policy file);
``stores/`` persists state with compare-and-swap and an audit log (file or etcd);
``guards/`` judges what the sources read; ``admin/`` is the gRPC switch and its CLI; the
controller drives the ramp.
"""
