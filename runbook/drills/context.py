"""Build a drill's context (target, platform with changes allowed) from a target spec."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from runbook import targets
from runbook.config import Environment, choose_target
from runbook.drills.faults import DrillContext
from runbook.errors import SafetyGateError
from runbook.platforms import NoPlatform, platform_for
from runbook.timeouts import Timeouts


def context_for(spec: Mapping[str, str | None]) -> DrillContext:
    """``spec``: ``name`` (sandbox, env or a profile), ``config_file``, ``home``.

    Raises ``SafetyGateError`` for a production target: drills never act there, not even to
    revert (nothing destructive reaches production).
    """
    config_value = spec.get("config_file")
    config_file = Path(config_value) if config_value else None
    home = Path(spec.get("home") or ".runbook")
    choice = choose_target(spec.get("name"), config_file=config_file)
    target = targets.resolve(choice, home)
    if target.environment is Environment.PRODUCTION:
        raise SafetyGateError(f"refused: drills never act on production ({target.describe()})")
    # A target of data services only has no platform: its drills need none to revert.
    platform = (platform_for(target, allow_changes=True) if target.platform is not None
                else NoPlatform(target.name))
    return DrillContext(target, Timeouts.from_env(), platform, home)
