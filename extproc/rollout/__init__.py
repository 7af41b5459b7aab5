"""Rollout control: the ramp policy, the persisted state machine, guards and the switch.

``policy`` and ``state`` are pure (no I/O beyond reading the policy file);
``store`` persists state with compare-and-swap and an audit log; the
controller and the admin API live beside them.
"""
