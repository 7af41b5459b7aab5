"""What a sidecar serves: the rules file's targeting with the rollout state's share.

Pure. The rollout state controls the default share (and, when rolled back, caps
every rule's own share); force lists and forced-cohort rules stay as written.
Rolled back to 0 % means everyone on v1, testers included (reason ``disabled``,
rule ``rolled_back``). No state (never known) means the rules file's own share,
and so does a rollout that is still ``pending`` (created, not started): starting
a controller does not change what users hear until someone starts the rollout.
A state for another rollout name is ignored.
"""

from __future__ import annotations

from dataclasses import replace

from extproc.core.model import Rules
from extproc.rollout.state import Phase, RolloutState


def apply_state(rules: Rules, state: RolloutState | None) -> Rules:
    if state is None or state.rollout != rules.name or state.phase is Phase.PENDING:
        return rules
    version = f"{rules.version}+r{state.revision}"
    if state.phase is Phase.ROLLED_BACK:
        if state.share == 0:
            return replace(rules, kill_switch=True, kill_rule="rolled_back", version=version)
        capped = tuple(
            replace(rule, share=min(rule.share, state.share)) if rule.share is not None else rule
            for rule in rules.rules
        )
        return replace(rules, share=state.share, rules=capped, version=version)
    return replace(rules, share=state.share, version=version)
