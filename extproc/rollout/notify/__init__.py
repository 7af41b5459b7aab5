"""Notifications: one event per rollout transition, delivered to webhooks, Slack and
Alertmanager off the controller's path (docs/notifications.md).

config (the policy's ``notify:`` section, pure) -> secrets (read at start-up) -> sinks
(event -> HTTP request; payloads and signing are pure) -> delivery (a bounded queue and a
thread per sink, retries with back-off) <- notifier (the controller's hook, dedup) and
leadership (the new leader's event); metrics declares every series.
"""
