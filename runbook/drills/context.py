"""Build a drill's context (target, platform with changes allowed) from the run's spec."""

from __future__ import annotations

from runbook.config import Environment
from runbook.drills.faults import DrillContext
from runbook.errors import SafetyGateError
from runbook.platforms import NoPlatform, platform_for
from runbook.targets import RunSpec
from runbook.timeouts import Timeouts


def context_for(run: RunSpec) -> DrillContext:
    """The context of a drill on ``run``'s target (resolved once, by whoever started the
    run: this only reads where it is now).

    Raises ``SafetyGateError`` for a production target: drills never act there, not even to
    revert (nothing destructive reaches production).
    """
    target = run.target()
    if target.environment is Environment.PRODUCTION:
        raise SafetyGateError(f"refused: drills never act on production ({target.describe()})")
    # A target of data services only has no platform: its drills need none to revert.
    platform = (platform_for(target, allow_changes=True) if target.platform is not None
                else NoPlatform(target.name))
    return DrillContext(target, Timeouts.from_env(), platform, run.home)
